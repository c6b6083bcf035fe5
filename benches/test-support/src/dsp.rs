//! Owns the fake DSP: a [`FakeServer`] speaking keep-alive HTTP/1.1 that bids, answers 204 or
//! hangs, answers win notices (`/win...`) with 200, and records every request it received.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    fake::{Conn, FakeServer},
    http::{read_request, Seen},
    wire,
};

/// How long a hanging fake DSP holds a call at most.
const HANG_MAX: Duration = Duration::from_secs(30);

/// What a fake DSP does with a bid request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Bid `price` under `seat` on the first impression after `delay`; with a nurl pointing
    /// back at this DSP's `/win` path when `nurl` is set.
    Bid {
        /// CPM.
        price: f64,
        /// Seat, also used in the bid and creative ids.
        seat: &'static str,
        /// Wait before answering.
        delay: Duration,
        /// Whether the bid carries a win-notice URL.
        nurl: bool,
    },
    /// Answer 204.
    NoBid,
    /// Read the request and never answer.
    Hang,
}

impl Behaviour {
    /// A bid of `price` under `seat`, answered at once, without a nurl.
    pub fn bid(price: f64, seat: &'static str) -> Behaviour {
        Behaviour::Bid {
            price,
            seat,
            delay: Duration::ZERO,
            nurl: false,
        }
    }
}

/// A fake DSP on loopback; stops on drop.
#[derive(Debug)]
pub struct FakeDsp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every request received, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _server: FakeServer,
}

impl FakeDsp {
    /// Starts a fake DSP that behaves as told.
    pub fn start(behaviour: Behaviour) -> FakeDsp {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let server = FakeServer::start(move |conn, ctx| serve(conn, &ctx, &behaviour, &record));
        FakeDsp {
            addr: server.addr,
            seen,
            _server: server,
        }
    }

    /// The win notices received.
    pub fn wins(&self) -> Vec<Seen> {
        self.received(|s| s.path.starts_with("/win"))
    }

    /// The bid requests received.
    pub fn bid_requests(&self) -> Vec<Seen> {
        self.received(|s| s.path == "/bid")
    }

    fn received(&self, keep: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| keep(s)).cloned().collect()
    }
}

fn serve(mut conn: TcpStream, ctx: &Conn, behaviour: &Behaviour, seen: &Mutex<Vec<Seen>>) {
    conn.set_read_timeout(Some(HANG_MAX)).unwrap();
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf) {
        if ctx.stop.is_set() {
            return;
        }
        seen.lock().unwrap().push(req.clone());
        let answer: Vec<u8> = if req.path.starts_with("/win") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
        } else {
            match behaviour {
                Behaviour::Hang => {
                    ctx.stop.hold(HANG_MAX);
                    return;
                }
                Behaviour::NoBid => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                Behaviour::Bid {
                    price,
                    seat,
                    delay,
                    nurl,
                } => {
                    std::thread::sleep(*delay);
                    let nurl = nurl.then(|| {
                        format!(
                            "http://{}/win?price=${{AUCTION_PRICE}}&id=${{AUCTION_ID}}",
                            ctx.server
                        )
                    });
                    let bid = wire::Bid {
                        seat,
                        price: &price.to_string(),
                        nurl: nurl.as_deref(),
                        ..wire::Bid::default()
                    };
                    wire::ok_json(&bid.response_to(&req.json()), "")
                }
            }
        };
        if conn.write_all(&answer).is_err() {
            return;
        }
    }
}
