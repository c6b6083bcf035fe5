//! Owns the HTTP side of the control plane on the workers: `POST /dsp`, `GET /dsp`,
//! `DELETE /dsp/{name}` (all three behind the onboarding token when one is set), `/healthz`
//! and `/readyz`.
//!
//! Workers only check the token and the JSON shape; resolution, address checks and the
//! registry itself live on the control thread ([`crate::control`]). A successful onboarding is
//! answered once every worker has applied the new registry version (bounded by
//! [`APPLY_WAIT_MAX`]), so a client that gets 201 can bid at once on any connection.
//!
//! Onboarding calls are rate limited by one token bucket per process, behind a mutex in
//! [`crate::Shared`]: onboarding is rare and off the auction path, and a process-wide bucket
//! makes `--onboard-rate-per-s` mean what it says whatever the worker count. It is checked
//! before the token, so guessing the token is rate limited too; the price is that a flood of
//! unauthenticated calls also delays legitimate re-onboarding (registered DSPs keep bidding
//! until their TTL runs out).

use std::sync::atomic::Ordering;

use futures_channel::oneshot;
use http::StatusCode;
use rtb_core::policy::DspPolicy;
use rtb_core::policy_fields::PolicyFields;
use rtb_core::registry::{DspOptions, Upsert};
use rtb_io::{Request, Response};
use serde::Deserialize;

use crate::{
    control::{truncate, Command, OnboardError, Onboarded},
    json_error, unauthorized, Shared,
};

/// Default sustained onboarding calls per second.
pub const ONBOARD_RATE_PER_S_DEFAULT: u32 = 50;
/// Default burst of onboarding calls (the bucket's size).
pub const ONBOARD_BURST_DEFAULT: u32 = 100;
/// How long onboarding waits for every worker to apply a new registry version.
pub const APPLY_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(200);
/// How often onboarding polls the workers' applied versions.
const APPLY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

#[derive(Debug, Deserialize)]
struct OnboardBody {
    name: String,
    base_url: String,
    #[serde(default)]
    bid_path: Option<String>,
    /// Bid requests gzip-compressed, gzip answers welcome (issue 16).
    #[serde(default)]
    gzip: bool,
    /// The roster's policy fields (issue 15): `qps`, `channels`, `media`, `countries`,
    /// `tmax_ms`, `bid_adjustment`.
    #[serde(flatten)]
    policy: PolicyFields,
}

/// Every field of the body, to name the one a JSON error is about.
const ONBOARD_FIELDS: [&str; 10] = [
    "name",
    "base_url",
    "bid_path",
    "gzip",
    "qps",
    "channels",
    "media",
    "countries",
    "tmax_ms",
    "bid_adjustment",
];

fn control_unavailable() -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "control plane busy, retry",
        "",
    )
}

/// 429 with `Retry-After` when the onboarding bucket is empty (checked before the token, so
/// token guessing is limited too).
fn over_rate(shared: &Shared) -> Option<Response> {
    let mut bucket = shared
        .onboard_limit
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if bucket.try_take(std::time::Instant::now()) {
        return None;
    }
    let retry_after = bucket.retry_after_s();
    drop(bucket);
    let mut r = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many onboarding calls (--onboard-rate-per-s), retry later",
        "",
    );
    r.headers.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(retry_after),
    );
    Some(r)
}

async fn wait_applied(shared: &Shared, version: u64) {
    let give_up = std::time::Instant::now() + APPLY_WAIT_MAX;
    while shared
        .metrics
        .iter()
        .any(|m| m.applied_version.load(Ordering::Acquire) < version)
    {
        if std::time::Instant::now() >= give_up {
            tracing::warn!(version, "not every worker applied the registry in time");
            return;
        }
        monoio::time::sleep(APPLY_POLL).await;
    }
}

/// The onboarding body and the policy it states, or the 400 that names the field at fault
/// (boxed: the control plane's rare error path keeps the result small).
fn read_body(req: &Request) -> Result<(OnboardBody, DspPolicy), Box<Response>> {
    let mut body: OnboardBody = serde_json::from_slice(&req.body).map_err(|e| {
        let msg = e.to_string();
        let field = ONBOARD_FIELDS
            .into_iter()
            .find(|f| msg.contains(&format!("`{f}`")))
            .unwrap_or("");
        let message = format!("invalid onboarding body: {}", truncate(&msg));
        Box::new(json_error(StatusCode::BAD_REQUEST, &message, field))
    })?;
    let policy = std::mem::take(&mut body.policy).check().map_err(|e| {
        let message = format!("{}: {}", e.field, truncate(&e.reason));
        Box::new(json_error(StatusCode::BAD_REQUEST, &message, e.field))
    })?;
    Ok((body, policy))
}

/// `POST /dsp`: 201 added, 200 refreshed or replaced, 400 invalid, 401 bad token, 409 full,
/// 429 over the onboarding rate.
pub async fn post_dsp(shared: &Shared, req: &Request) -> Response {
    if let Some(r) = over_rate(shared) {
        return r;
    }
    if !shared.authorized(req) {
        return unauthorized();
    }
    let (body, policy) = match read_body(req) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let (tx, rx) = oneshot::channel();
    let name_for_log = truncate(&body.name).to_string();
    if !shared.control.send(Command::Onboard {
        name: body.name,
        base_url: body.base_url,
        bid_path: body.bid_path,
        options: DspOptions {
            gzip: body.gzip,
            policy: std::sync::Arc::new(policy),
        },
        reply: tx,
    }) {
        return control_unavailable();
    }
    match rx.await {
        Ok(Ok(done)) => {
            wait_applied(shared, done.version).await;
            onboarded(&done)
        }
        Ok(Err(OnboardError::Invalid(msg))) => {
            tracing::debug!(dsp = %name_for_log, error = %msg, "onboarding refused");
            let field = msg.split_once(':').map_or("", |(f, _)| f);
            json_error(StatusCode::BAD_REQUEST, &msg, field)
        }
        // 409: the request conflicts with the registry's state (it is full); retrying after a
        // DSP leaves or expires can succeed.
        Ok(Err(OnboardError::Full)) => json_error(
            StatusCode::CONFLICT,
            "the registry is full (--max-dsps)",
            "name",
        ),
        Err(_) => control_unavailable(),
    }
}

/// The answer to a successful onboarding: what the DSP is now, with the policy in force (a
/// roster DSP's heartbeat keeps the roster's).
fn onboarded(done: &Onboarded) -> Response {
    let (status, what) = match done.upsert {
        Upsert::Added => (StatusCode::CREATED, "added"),
        Upsert::Refreshed => (StatusCode::OK, "refreshed"),
        Upsert::Replaced => (StatusCode::OK, "replaced"),
    };
    let mut body = serde_json::json!({
        "status": what,
        "name": done.entry.name,
        "url": done.entry.url.to_string(),
        "addr": done.addr.to_string(),
        "addrs": done.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "gzip": done.entry.options.gzip,
        "version": done.version,
        "added_at_ms": done.entry.added_at_ms,
        "last_seen_ms": done.entry.last_seen_ms,
    });
    let policy = PolicyFields::from(&*done.entry.options.policy);
    if let (Some(body), Ok(serde_json::Value::Object(fields))) =
        (body.as_object_mut(), serde_json::to_value(policy))
    {
        body.extend(fields);
    }
    Response::json(status, body.to_string())
}

/// `GET /dsp`: the registry as JSON; 401 without the token (when one is set). A wrong token
/// spends an onboarding-rate token (429 once they are gone), so the listing cannot be used to
/// guess the token faster than POST /dsp can.
pub async fn list(shared: &Shared, req: &Request) -> Response {
    if !shared.authorized(req) {
        return over_rate(shared).unwrap_or_else(unauthorized);
    }
    let (tx, rx) = oneshot::channel();
    if !shared.control.send(Command::List { reply: tx }) {
        return control_unavailable();
    }
    match rx.await {
        Ok(json) => Response::json(StatusCode::OK, json),
        Err(_) => control_unavailable(),
    }
}

/// `DELETE /dsp/{name}`: 200 removed, 404 unknown, 401 bad token, 429 over the onboarding rate.
pub async fn delete_dsp(shared: &Shared, req: &Request, name: &str) -> Response {
    if let Some(r) = over_rate(shared) {
        return r;
    }
    if !shared.authorized(req) {
        return unauthorized();
    }
    let (tx, rx) = oneshot::channel();
    if !shared.control.send(Command::Remove {
        name: name.to_string(),
        reply: tx,
    }) {
        return control_unavailable();
    }
    match rx.await {
        Ok((true, version)) => {
            wait_applied(shared, version).await;
            let body = serde_json::json!({ "status": "removed", "name": name, "version": version });
            Response::json(StatusCode::OK, body.to_string())
        }
        Ok((false, _)) => json_error(StatusCode::NOT_FOUND, "no such DSP", "name"),
        Err(_) => control_unavailable(),
    }
}

/// `/healthz` (process alive) and `/readyz` (every worker listening, not shutting down).
pub fn health(shared: &Shared, path: &str) -> Response {
    if path == "/healthz" {
        return Response::json(StatusCode::OK, r#"{"status":"ok"}"#);
    }
    if shared.ready.load(Ordering::Acquire) {
        Response::json(StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        Response::json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready"}"#)
    }
}
