//! Owns drawing the simulation's traffic: bid requests (valid ones with every rule the auction
//! knows, and a share of invalid ones) and DSP answers (valid bids, bids below the floor, in the
//! wrong currency, for unknown impressions or deals, defective, blocked, tied...).
//! Everything is drawn from small sets of values, so that ties, floors met exactly and every
//! combination of rules come up often.

use crate::openrtb::{
    BidModel, DealModel, ImpModel, Price, RequestDefect, RequestModel, ResponseModel, SeatModel,
};
use crate::rng::Rng;

/// How requests are drawn.
#[derive(Clone, Copy, Debug)]
pub struct RequestMix {
    /// Share of requests that are invalid (400).
    pub invalid: f64,
    /// Share of `test: 1` requests (no win or loss notice).
    pub test: f64,
    /// How often each optional rule (deals, seats, blocks, currencies) is present.
    pub rules: f64,
}

/// How a DSP bids.
#[derive(Clone, Copy, Debug)]
pub struct BidStyle {
    pub bids_max: u64,
    /// How often each field of a bid goes wrong.
    pub sloppiness: f64,
    /// How often a bid is on a deal (when the impression has deals).
    pub deals: f64,
    /// How often a bid carries a `nurl` (and, drawn apart, a `lurl`).
    pub nurl: f64,
}

const FLOORS: [f64; 6] = [0.0, 0.0, 0.5, 1.0, 1.5, 2.5];
const DEAL_FLOORS: [f64; 4] = [0.0, 1.0, 2.0, 2.5];
const PRICES: [f64; 8] = [0.5, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0];
const TMAX_TYPICAL: [u32; 5] = [50, 80, 100, 120, 200];

pub fn request(rng: &mut Rng, serial: u64, mix: &RequestMix) -> RequestModel {
    let rules = mix.rules;
    let cur = *rng.pick(&[None, None, None, None, Some("USD"), Some("GBP")]);
    let mut request = RequestModel {
        id: format!("r{serial}"),
        tmax_ms: tmax(rng),
        at: *rng.pick(&[None, None, Some(1), Some(2)]),
        cur,
        test: rng.chance(mix.test),
        version: *rng.pick(&[None, None, None, Some("2.5"), Some("2.6")]),
        wseat: if rng.chance(rules / 4.0) {
            vec!["s1", "s2"]
        } else {
            vec![]
        },
        bseat: if rng.chance(rules / 3.0) {
            vec!["bad"]
        } else {
            vec![]
        },
        badv: if rng.chance(rules / 2.0) {
            vec!["blocked.com"]
        } else {
            vec![]
        },
        bcat: if rng.chance(rules / 2.0) {
            vec!["IAB25"]
        } else {
            vec![]
        },
        imps: Vec::new(),
        defect: None,
    };
    let currency = request.auction_currency();
    for i in 0..rng.range(1, 3) {
        request.imps.push(imp(rng, i, currency, rules));
    }
    if rng.chance(mix.invalid) {
        let defect = *rng.pick(&RequestDefect::ALL);
        if defect == RequestDefect::DuplicateImpId && request.imps.len() < 2 {
            request.imps.push(imp(rng, 1, currency, rules));
        }
        request.defect = Some(defect);
    }
    request
}

fn tmax(rng: &mut Rng) -> Option<u32> {
    match rng.weighted(&[30, 50, 10, 9, 1]) {
        0 => None,
        1 => Some(*rng.pick(&TMAX_TYPICAL)),
        2 => Some(rng.range(1, 20) as u32),
        3 => Some(rng.range(1, 300) as u32),
        _ => Some(u32::MAX),
    }
}

/// A floor's currency: mostly absent (the impression's, or USD) or the auction's, sometimes not.
fn floor_currency(rng: &mut Rng, currency: &'static str) -> Option<&'static str> {
    match rng.weighted(&[70, 20, 10]) {
        0 => None,
        1 => Some(currency),
        _ => Some("EUR"),
    }
}

fn imp(rng: &mut Rng, i: u64, currency: &'static str, rules: f64) -> ImpModel {
    let mut deals = Vec::new();
    if rng.chance(rules) {
        for j in 0..rng.range(1, 3) {
            deals.push(DealModel {
                id: format!("d{i}-{j}"),
                floor: *rng.pick(&DEAL_FLOORS),
                floor_cur: floor_currency(rng, currency),
                at: *rng.pick(&[None, Some(1), Some(2), Some(3), Some(3)]),
                wseat: if rng.chance(0.3) { vec!["s1"] } else { vec![] },
            });
        }
    }
    ImpModel {
        id: format!("i{i}"),
        floor: *rng.pick(&FLOORS),
        floor_cur: floor_currency(rng, currency),
        private_auction: !deals.is_empty() && rng.chance(rules / 3.0),
        deals,
    }
}

/// A DSP's answer to `request`, its bid ids prefixed with the DSP's name.
pub fn response(
    rng: &mut Rng,
    request: &RequestModel,
    dsp: &str,
    style: &BidStyle,
) -> ResponseModel {
    let sloppy = style.sloppiness;
    let id = if rng.chance(sloppy / 4.0) {
        "other".to_string()
    } else {
        request.id.clone()
    };
    let currency = request.auction_currency();
    let cur = if rng.chance(sloppy / 3.0) {
        Some("EUR")
    } else if currency == "USD" {
        *rng.pick(&[None, Some("USD")])
    } else {
        Some(currency)
    };
    let mut response = ResponseModel {
        id,
        cur,
        seats: Vec::new(),
    };
    let mut serial = 0;
    for _ in 0..rng.range(1, 2) {
        let seat = if rng.chance(sloppy) {
            Some("bad")
        } else {
            *rng.pick(&[None, Some("s1"), Some("s2")])
        };
        let mut bids = Vec::new();
        for _ in 0..rng.range(1, style.bids_max) {
            serial += 1;
            bids.push(bid(rng, request, &format!("{dsp}-{serial}"), dsp, style));
        }
        response.seats.push(SeatModel { seat, bids });
    }
    response
}

fn bid(rng: &mut Rng, request: &RequestModel, id: &str, dsp: &str, style: &BidStyle) -> BidModel {
    let sloppy = style.sloppiness;
    let imp = rng.pick(&request.imps);
    let impid = match rng.weighted(&[100, (sloppy * 30.0) as u32, (sloppy * 15.0) as u32]) {
        0 => Some(imp.id.clone()),
        1 => Some("nope".to_string()),
        _ => None,
    };
    let dealid = if !imp.deals.is_empty() && rng.chance(style.deals) {
        if rng.chance(sloppy / 4.0) {
            Some("ghost".to_string())
        } else {
            Some(rng.pick(&imp.deals).id.clone())
        }
    } else {
        None
    };
    let nurl = rng
        .chance(style.nurl)
        .then(|| format!("http://{dsp}.example/win?b={id}&p=${{AUCTION_PRICE}}"));
    let lurl = rng
        .chance(style.nurl)
        .then(|| format!("http://{dsp}.example/loss?b={id}&r=${{AUCTION_LOSS}}"));
    BidModel {
        id: id.to_string(),
        impid,
        price: price(rng, sloppy),
        dealid,
        nurl,
        lurl,
        adomain: if rng.chance(sloppy) {
            vec!["ads.blocked.com"]
        } else {
            rng.pick(&[vec![], vec!["ok.com"], vec!["notblocked.com"]])
                .clone()
        },
        cat: if rng.chance(sloppy) {
            vec!["IAB25-3"]
        } else {
            rng.pick(&[vec![], vec!["IAB1"], vec!["IAB251"]]).clone()
        },
    }
}

fn price(rng: &mut Rng, sloppy: f64) -> Price {
    let weights = [80, 20, (sloppy * 100.0) as u32];
    match rng.weighted(&weights) {
        0 => Price::Cpm(*rng.pick(&PRICES)),
        1 => Price::Cpm(rng.range(1, 800) as f64 / 100.0),
        _ => match rng.below(5) {
            0 => Price::Cpm(0.0),
            1 => Price::Cpm(-1.0),
            2 => Price::Cpm(1500.0),
            3 => Price::Text(2.0),
            _ => Price::Missing,
        },
    }
}

/// A 200 body that is not a bid response.
pub fn garbage(rng: &mut Rng) -> Vec<u8> {
    let bodies: [&[u8]; 5] = [
        b"not json at all",
        b"[1,2,3]",
        b"{\"id\":\"x\",\"seatbid\":5}",
        b"{\"seatbid\":[]}",
        b"{\"id\":\"x\",\"seatbid\":[{\"bid\":[",
    ];
    rng.pick(&bodies).to_vec()
}
