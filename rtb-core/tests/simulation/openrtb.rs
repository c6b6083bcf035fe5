//! Owns the simulation's OpenRTB models: requests and DSP answers as plain structs, rendered to
//! the JSON the engine reads. The reference auction works on these structs, never on what the
//! engine decoded, so the two only meet in the comparison.

use std::fmt::Write as _;

/// A bid request as the simulation meant it.
#[derive(Clone, Debug)]
pub struct RequestModel {
    pub id: String,
    pub tmax_ms: Option<u32>,
    /// `at`; absent means second price.
    pub at: Option<u8>,
    /// The single entry of `cur`; absent means USD.
    pub cur: Option<&'static str>,
    pub test: bool,
    /// The `x-openrtb-version` header sent with it (`None`: no header).
    pub version: Option<&'static str>,
    pub wseat: Vec<&'static str>,
    pub bseat: Vec<&'static str>,
    pub badv: Vec<&'static str>,
    pub bcat: Vec<&'static str>,
    pub imps: Vec<ImpModel>,
    /// Set when the request is meant to be refused (400).
    pub defect: Option<RequestDefect>,
}

#[derive(Clone, Debug)]
pub struct ImpModel {
    pub id: String,
    pub floor: f64,
    pub floor_cur: Option<&'static str>,
    pub private_auction: bool,
    pub deals: Vec<DealModel>,
}

#[derive(Clone, Debug)]
pub struct DealModel {
    pub id: String,
    pub floor: f64,
    pub floor_cur: Option<&'static str>,
    pub at: Option<u8>,
    pub wseat: Vec<&'static str>,
}

/// Ways a request breaks a rule of `rtb_core::request` (each a 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestDefect {
    NotJson,
    MissingId,
    NoImps,
    ZeroTmax,
    ImpWithoutMedia,
    DuplicateImpId,
    /// A valid body under an `x-openrtb-version` the exchange does not speak.
    UnknownVersion,
}

impl RequestDefect {
    pub const ALL: [RequestDefect; 7] = [
        RequestDefect::NotJson,
        RequestDefect::MissingId,
        RequestDefect::NoImps,
        RequestDefect::ZeroTmax,
        RequestDefect::ImpWithoutMedia,
        RequestDefect::DuplicateImpId,
        RequestDefect::UnknownVersion,
    ];
}

/// A DSP's answer body as the simulation meant it.
#[derive(Clone, Debug)]
pub struct ResponseModel {
    pub id: String,
    pub cur: Option<&'static str>,
    pub seats: Vec<SeatModel>,
}

#[derive(Clone, Debug)]
pub struct SeatModel {
    pub seat: Option<&'static str>,
    pub bids: Vec<BidModel>,
}

#[derive(Clone, Debug)]
pub struct BidModel {
    pub id: String,
    pub impid: Option<String>,
    pub price: Price,
    pub dealid: Option<String>,
    pub nurl: Option<String>,
    pub lurl: Option<String>,
    pub adomain: Vec<&'static str>,
    pub cat: Vec<&'static str>,
}

/// A bid's `price` field.
#[derive(Clone, Copy, Debug)]
pub enum Price {
    Cpm(f64),
    /// Written as a JSON string: a defective bid.
    Text(f64),
    Missing,
}

impl ResponseModel {
    pub fn bid_count(&self) -> usize {
        self.seats.iter().map(|s| s.bids.len()).sum()
    }
}

fn str_list(out: &mut String, name: &str, items: &[&str]) {
    if items.is_empty() {
        return;
    }
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    let _ = write!(out, ",\"{name}\":[{}]", quoted.join(","));
}

impl RequestModel {
    pub fn auction_currency(&self) -> &'static str {
        self.cur.unwrap_or("USD")
    }

    /// The `x-openrtb-version` header the request is sent with.
    pub fn version_header(&self) -> Option<&'static str> {
        match self.defect {
            Some(RequestDefect::UnknownVersion) => Some("3.0"),
            _ => self.version,
        }
    }

    /// The JSON body (`id` first, then `tmax`: the simulation's bodies keep that order).
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        match self.defect {
            Some(RequestDefect::NotJson) => return b"{\"id\":\"broken\",\"imp\":[".to_vec(),
            Some(RequestDefect::MissingId) => out.push_str("{\"ext\":{}"),
            _ => {
                let _ = write!(out, "{{\"id\":\"{}\"", self.id);
            }
        }
        match (self.defect, self.tmax_ms) {
            (Some(RequestDefect::ZeroTmax), _) => out.push_str(",\"tmax\":0"),
            (_, Some(tmax)) => {
                let _ = write!(out, ",\"tmax\":{tmax}");
            }
            _ => {}
        }
        if let Some(at) = self.at {
            let _ = write!(out, ",\"at\":{at}");
        }
        if let Some(cur) = self.cur {
            let _ = write!(out, ",\"cur\":[\"{cur}\"]");
        }
        if self.test {
            out.push_str(",\"test\":1");
        }
        str_list(&mut out, "wseat", &self.wseat);
        str_list(&mut out, "bseat", &self.bseat);
        str_list(&mut out, "badv", &self.badv);
        str_list(&mut out, "bcat", &self.bcat);
        out.push_str(",\"imp\":[");
        if self.defect != Some(RequestDefect::NoImps) {
            self.render_imps(&mut out);
        }
        out.push_str("],\"site\":{\"domain\":\"pub.example\"}}");
        out.into_bytes()
    }

    fn render_imps(&self, out: &mut String) {
        for (i, imp) in self.imps.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let id = match self.defect {
                Some(RequestDefect::DuplicateImpId) => "dup",
                _ => imp.id.as_str(),
            };
            let _ = write!(out, "{{\"id\":\"{id}\"");
            if self.defect != Some(RequestDefect::ImpWithoutMedia) {
                out.push_str(",\"banner\":{\"w\":300,\"h\":250}");
            }
            let _ = write!(out, ",\"bidfloor\":{}", imp.floor);
            if let Some(cur) = imp.floor_cur {
                let _ = write!(out, ",\"bidfloorcur\":\"{cur}\"");
            }
            if imp.private_auction || !imp.deals.is_empty() {
                let _ = write!(
                    out,
                    ",\"pmp\":{{\"private_auction\":{},\"deals\":[",
                    u8::from(imp.private_auction)
                );
                for (j, deal) in imp.deals.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    deal.render(out);
                }
                out.push_str("]}");
            }
            out.push('}');
        }
    }
}

impl DealModel {
    fn render(&self, out: &mut String) {
        let _ = write!(out, "{{\"id\":\"{}\",\"bidfloor\":{}", self.id, self.floor);
        if let Some(cur) = self.floor_cur {
            let _ = write!(out, ",\"bidfloorcur\":\"{cur}\"");
        }
        if let Some(at) = self.at {
            let _ = write!(out, ",\"at\":{at}");
        }
        str_list(out, "wseat", &self.wseat);
        out.push('}');
    }
}

impl ResponseModel {
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        let _ = write!(out, "{{\"id\":\"{}\"", self.id);
        if let Some(cur) = self.cur {
            let _ = write!(out, ",\"cur\":\"{cur}\"");
        }
        out.push_str(",\"seatbid\":[");
        for (s, seat) in self.seats.iter().enumerate() {
            if s > 0 {
                out.push(',');
            }
            out.push('{');
            if let Some(name) = seat.seat {
                let _ = write!(out, "\"seat\":\"{name}\",");
            }
            out.push_str("\"bid\":[");
            for (b, bid) in seat.bids.iter().enumerate() {
                if b > 0 {
                    out.push(',');
                }
                bid.render(&mut out);
            }
            out.push_str("]}");
        }
        out.push_str("]}");
        out.into_bytes()
    }
}

impl BidModel {
    fn render(&self, out: &mut String) {
        let _ = write!(out, "{{\"id\":\"{}\"", self.id);
        if let Some(impid) = &self.impid {
            let _ = write!(out, ",\"impid\":\"{impid}\"");
        }
        match self.price {
            Price::Cpm(p) => {
                let _ = write!(out, ",\"price\":{p}");
            }
            Price::Text(p) => {
                let _ = write!(out, ",\"price\":\"{p}\"");
            }
            Price::Missing => {}
        }
        if let Some(deal) = &self.dealid {
            let _ = write!(out, ",\"dealid\":\"{deal}\"");
        }
        if let Some(nurl) = &self.nurl {
            let _ = write!(out, ",\"nurl\":\"{nurl}\"");
        }
        if let Some(lurl) = &self.lurl {
            let _ = write!(out, ",\"lurl\":\"{lurl}\"");
        }
        str_list(out, "adomain", &self.adomain);
        str_list(out, "cat", &self.cat);
        out.push('}');
    }
}
