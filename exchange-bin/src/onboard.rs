//! Owns the HTTP side of the control plane on the workers: `POST /dsp`, `GET /dsp`,
//! `DELETE /dsp/{name}` (all three behind the onboarding token when one is set), `/healthz`
//! and `/readyz`.
//!
//! Workers only check the token and the JSON shape; resolution, address checks and the
//! registry itself live on the control thread (`rtb_io::engine_shell::control`). A successful onboarding is
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

use http::StatusCode;
use rtb_core::registry::{DspOptions, Upsert};
use rtb_io::{Request, Response};

use rtb_io::engine_shell::{
    control::{ask, truncate, Command, Onboard, OnboardError},
    metrics::all_applied,
};

use crate::{unauthorized, Shared};

/// Default sustained onboarding calls per second.
pub const ONBOARD_RATE_PER_S_DEFAULT: u32 = 50;
/// Default burst of onboarding calls (the bucket's size).
pub const ONBOARD_BURST_DEFAULT: u32 = 100;
/// How long onboarding waits for every worker to apply a new registry version.
pub const APPLY_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(200);
/// How often onboarding polls the workers' applied versions.
const APPLY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

fn control_unavailable() -> Response {
    Response::json_error(
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
    let mut r = Response::json_error(
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
    while !all_applied(&shared.shell.metrics, version) {
        if std::time::Instant::now() >= give_up {
            tracing::warn!(version, "not every worker applied the registry in time");
            return;
        }
        monoio::time::sleep(APPLY_POLL).await;
    }
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
    let (body, policy) = match rtb_core::onboard::parse(&req.body) {
        Ok(read) => read,
        Err(refused) => {
            return Response::json_error(StatusCode::BAD_REQUEST, &refused.message, refused.field)
        }
    };
    let name_for_log = truncate(&body.name).to_string();
    let options = DspOptions {
        gzip: body.gzip,
        policy: std::sync::Arc::new(policy),
    };
    let answer = ask(&shared.control, |reply| Command::Onboard {
        name: body.name,
        base_url: body.base_url,
        bid_path: body.bid_path,
        options,
        reply,
    });
    match answer.await {
        Ok(Ok((done, version))) => {
            wait_applied(shared, version).await;
            onboarded(&done, version)
        }
        Ok(Err(OnboardError::Invalid(msg))) => {
            tracing::debug!(dsp = %name_for_log, error = %msg, "onboarding refused");
            let field = msg.split_once(':').map_or("", |(f, _)| f);
            Response::json_error(StatusCode::BAD_REQUEST, &msg, field)
        }
        // 409: the request conflicts with the registry's state (it is full); retrying after a
        // DSP leaves or expires can succeed.
        Ok(Err(OnboardError::Full)) => Response::json_error(
            StatusCode::CONFLICT,
            "the registry is full (--max-dsps)",
            "name",
        ),
        Err(_) => control_unavailable(),
    }
}

/// The answer to a successful onboarding: 201 added, 200 refreshed or replaced, with what the
/// DSP is now.
fn onboarded(done: &Onboard, version: u64) -> Response {
    let status = match done.upsert {
        Upsert::Added => StatusCode::CREATED,
        Upsert::Refreshed | Upsert::Replaced => StatusCode::OK,
    };
    let body = rtb_core::onboard::onboarded_json(
        done.upsert,
        version,
        &done.entry,
        done.addrs[0],
        &done.addrs,
    );
    Response::json(status, body)
}

/// `GET /dsp`: the registry as JSON; 401 without the token (when one is set). A wrong token
/// spends an onboarding-rate token (429 once they are gone), so the listing cannot be used to
/// guess the token faster than POST /dsp can.
pub async fn list(shared: &Shared, req: &Request) -> Response {
    if !shared.authorized(req) {
        return over_rate(shared).unwrap_or_else(unauthorized);
    }
    match ask(&shared.control, |reply| Command::List { reply }).await {
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
    let name_owned = name.to_string();
    let answer = ask(&shared.control, |reply| Command::Remove {
        name: name_owned,
        reply,
    });
    match answer.await {
        Ok((true, version)) => {
            wait_applied(shared, version).await;
            let body = serde_json::json!({ "status": "removed", "name": name, "version": version });
            Response::json(StatusCode::OK, body.to_string())
        }
        Ok((false, _)) => Response::json_error(StatusCode::NOT_FOUND, "no such DSP", "name"),
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
