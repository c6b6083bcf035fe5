//! Whether a bid's creative fits its impression: the markup type a bid declares (`bid.mtype`,
//! OpenRTB 2.6 §4.2.3: 1 banner, 2 video, 3 audio, 4 native) against the media objects the
//! impression offers, and a banner's size (`bid.w`, `bid.h`) against the impression's banner
//! `w`/`h` and `format` list (§3.2.6, §3.2.10), flexible ratio formats included.
//!
//! The banner is read from the request's tape only when a banner bid with a size arrives, so a
//! request costs nothing more to decode.

use simd_json::Node;

use crate::json::{array_items, as_i64, object_entries};

/// One allowed banner size: exact, or a ratio with a minimum width ("Flex Ads").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Size {
    w: Option<u64>,
    h: Option<u64>,
    wratio: Option<u64>,
    hratio: Option<u64>,
    wmin: Option<u64>,
}

impl Size {
    fn read(nodes: &[Node<'_>], object: usize) -> Size {
        let mut size = Size::default();
        for (key, value) in object_entries(nodes, object) {
            let slot = match key {
                "w" => &mut size.w,
                "h" => &mut size.h,
                "wratio" => &mut size.wratio,
                "hratio" => &mut size.hratio,
                "wmin" => &mut size.wmin,
                _ => continue,
            };
            *slot = as_i64(nodes, value).and_then(|v| u64::try_from(v).ok());
        }
        size
    }

    /// Whether this entry says anything about size.
    fn is_given(&self) -> bool {
        (self.w.is_some() && self.h.is_some()) || (self.wratio.is_some() && self.hratio.is_some())
    }

    fn accepts(&self, w: u64, h: u64) -> bool {
        if let (Some(sw), Some(sh)) = (self.w, self.h) {
            if (sw, sh) == (w, h) {
                return true;
            }
        }
        match (self.wratio, self.hratio) {
            // Same shape (w/h == wratio/hratio) and at least as wide as the minimum.
            (Some(wr), Some(hr)) if wr > 0 && hr > 0 => {
                w.saturating_mul(hr) == h.saturating_mul(wr) && w >= self.wmin.unwrap_or(0)
            }
            _ => false,
        }
    }
}

/// Whether the banner object at `banner` (its `w`/`h`, then each `format`) accepts a `w` x `h`
/// creative; `None` when it gives no size at all, so there is nothing to check against.
pub(crate) fn banner_accepts(nodes: &[Node<'_>], banner: usize, w: u32, h: u32) -> Option<bool> {
    let (w, h) = (u64::from(w), u64::from(h));
    let mut given = false;
    let own = Size::read(nodes, banner);
    if own.is_given() {
        given = true;
        if own.accepts(w, h) {
            return Some(true);
        }
    }
    let formats = object_entries(nodes, banner)
        .filter(|&(key, _)| key == "format")
        .flat_map(|(_, list)| array_items(nodes, list));
    for format in formats {
        let size = Size::read(nodes, format);
        if size.is_given() {
            given = true;
            if size.accepts(w, h) {
                return Some(true);
            }
        }
    }
    given.then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Decoder, Document};

    fn accepts(banner: &str, w: u32, h: u32) -> Option<bool> {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let parsed = doc.parse(banner.as_bytes(), &mut decoder, false).unwrap();
        banner_accepts(parsed.tape.nodes(), 0, w, h)
    }

    #[test]
    fn exact_sizes_from_the_banner_and_its_formats() {
        let banner = r#"{"w":300,"h":250,"format":[{"w":728,"h":90},{"w":320,"h":50}]}"#;
        assert_eq!(accepts(banner, 300, 250), Some(true));
        assert_eq!(accepts(banner, 320, 50), Some(true));
        assert_eq!(accepts(banner, 300, 251), Some(false));
        assert_eq!(accepts(r#"{"format":[{"w":1,"h":2}]}"#, 2, 1), Some(false));
    }

    #[test]
    fn flexible_formats_take_the_same_shape_above_the_minimum_width() {
        let banner = r#"{"format":[{"wratio":16,"hratio":9,"wmin":320}]}"#;
        assert_eq!(accepts(banner, 640, 360), Some(true));
        assert_eq!(accepts(banner, 320, 180), Some(true));
        assert_eq!(accepts(banner, 160, 90), Some(false), "below wmin");
        assert_eq!(accepts(banner, 640, 361), Some(false), "another shape");
    }

    #[test]
    fn a_banner_without_sizes_accepts_anything_unchecked() {
        assert_eq!(accepts("{}", 300, 250), None);
        assert_eq!(accepts(r#"{"w":300}"#, 1, 1), None);
        assert_eq!(accepts(r#"{"format":[]}"#, 1, 1), None);
        assert_eq!(accepts(r#"{"w":-5,"h":-5}"#, 1, 1), None);
    }
}
