//! The value rules of the object model: which integers are flags, sizes, durations or codes,
//! and which enumerations strict validation closes.
//!
//! # Which lists are closed, and why
//!
//! OpenRTB 2.6 §2.6 ("Versioning Behavior") says bidders and exchanges "must tolerate receiving
//! new or unexpected fields and enumerated list values gracefully". Since 2.6 every list lives
//! in AdCOM 1.0 "to enable more rapid iteration" (§2), and AdCOM grows its lists in place: the
//! copy read for this module (AdCOM master, commit 26c59ba) has Device Types up to 8 (OOH
//! Device) and Plcmt Subtypes - Video up to 9, both added after 1.0 was published. So an
//! enumeration is closed here only where no future value can be meant:
//!
//! | closed | values accepted | why |
//! |---|---|---|
//! | flags: `test`, `allimps`, `regs.coppa`, `regs.gdpr` (and 2.5's `regs.ext.gdpr`), `imp.instl`, `imp.secure`, `imp.rwdd`, `imp.clickbrowser`, `pmp.private_auction`, `deal.guar`, `source.fd`, `schain.complete`, `schain.nodes[].hp`, `site.mobile`, `*.privacypolicy`, `app.paid`, `content.livestream`, `content.sourcerelationship`, `content.embeddable`, `content.realtime`, `content.firstbroadcast`, `device.dnt`, `device.lmt`, `device.js`, `device.geofetch`, `sua.mobile`, `banner.topframe`, `banner.vcm`, `video.skip`, `video.boxingallowed`, `audio.stitched`; Native `aurlsupport`, `durlsupport`, `privacy`, `assets[].required` | 0, 1 | each is defined as "0 = no, 1 = yes" (or two named states): a yes/no has no third value to tolerate |
//! | `at` | 1, 2, 500+ | the exchange runs this auction itself and cannot "ignore" a type it does not know; 2.6 defines 1 and 2 and gives exchange-specific types 500 and up |
//! | Native 1.2 `context` | 1-3, 500+ | Native 1.2 table 7.1; Native 1.2 is final (no revision since 2017) and its tables reserve 500+ for exchanges |
//! | Native 1.2 `contextsubtype` | 10-15, 20-22, 30-32, 500+, in the group of `context` | table 7.2, which also says a subtype goes with its context's group |
//! | Native 1.2 `plcmttype` | 1-4, 500+ | table 7.3 |
//! | Native 1.2 `eventtrackers[].event` | 1-4, 500+ | table 7.6 (AdCOM's Event Types numbers differently; the Native request uses Native's) |
//! | Native 1.2 `eventtrackers[].methods` | 1, 2, 500+ | table 7.7 |
//!
//! Everything else that refers to a list is **open**: an integer, never negative unless the
//! list defines negative values (Start Delay Modes -2..; Pod Sequence and Slot Position in Pod
//! -1..). That covers every AdCOM list, `device.devicetype` included (the issue named it as
//! closed, but it is AdCOM's Device Types, which gained value 8 in place), the lists 2.6 gives
//! inline that may gain values in a monthly release (`imp.ssai`, `banner.btype`, `deal.at`,
//! which "can be defined by the exchange"), and the Native asset type tables (7.4, 7.5), which
//! call themselves "non-exhaustive and intended to be extended by the buyers and sellers".
//! Closing one more list is a one-line change of its field's rule in the tables.

use super::schema::{Ints, Nums};

/// 0 or 1.
pub(crate) const FLAG: Ints = Ints::Between(0, 1);
/// A code of an open list (AdCOM, or an inline 2.6 list that may grow): never negative.
pub(crate) const CODE: Ints = Ints::AtLeast(0);
/// Pixels, ratios' minimums, screen density: never negative.
pub(crate) const SIZE: Ints = Ints::AtLeast(0);
/// A ratio term (`format.wratio`, `format.hratio`): a zero ratio describes no shape.
pub(crate) const RATIO: Ints = Ints::AtLeast(1);
/// Seconds, counts, bitrates (Kbps), metres: never negative.
pub(crate) const AMOUNT: Ints = Ints::AtLeast(0);
/// A count that must be at least one (`plcmtcnt`, `title.len`).
pub(crate) const POSITIVE: Ints = Ints::AtLeast(1);
/// `maxextended`: -1 means "no limit", 0 "no extension", more is seconds.
pub(crate) const EXTENSION: Ints = Ints::AtLeast(-1);
/// AdCOM Start Delay Modes: > 0 seconds into the content, 0 pre-roll, -1 generic mid-roll,
/// -2 generic post-roll.
pub(crate) const START_DELAY: Ints = Ints::AtLeast(-2);
/// AdCOM Pod Sequence (-1 last, 0 any, 1 first) and Slot Position in Pod (-1 last, 0 any,
/// 1 first, 2 first or last): open lists whose least value is -1.
pub(crate) const POD_POSITION: Ints = Ints::AtLeast(-1);
/// `geo.utcoffset`: minutes from UTC; real offsets run from UTC-12:00 to UTC+14:00.
pub(crate) const UTC_OFFSET: Ints = Ints::Between(-720, 840);
/// Vendor-specific codes start here in every list that reserves a range.
pub(crate) const VENDOR_CODES_MIN: i64 = 500;

/// `at`: 1 first price, 2 second price plus, 500+ exchange-specific.
pub(crate) const AUCTION_TYPE: Ints = Ints::Listed {
    values: &[1, 2],
    vendor_from: VENDOR_CODES_MIN,
};
/// Native 1.2 table 7.1.
pub(crate) const NATIVE_CONTEXT: Ints = Ints::Listed {
    values: &[1, 2, 3],
    vendor_from: VENDOR_CODES_MIN,
};
/// Native 1.2 table 7.2 (its group, the tens digit, must match `context`: see the native
/// module).
pub(crate) const NATIVE_CONTEXT_SUBTYPE: Ints = Ints::Listed {
    values: &[10, 11, 12, 13, 14, 15, 20, 21, 22, 30, 31, 32],
    vendor_from: VENDOR_CODES_MIN,
};
/// Native 1.2 table 7.3.
pub(crate) const NATIVE_PLACEMENT: Ints = Ints::Listed {
    values: &[1, 2, 3, 4],
    vendor_from: VENDOR_CODES_MIN,
};
/// Native 1.2 table 7.6.
pub(crate) const NATIVE_EVENT: Ints = Ints::Listed {
    values: &[1, 2, 3, 4],
    vendor_from: VENDOR_CODES_MIN,
};
/// Native 1.2 table 7.7.
pub(crate) const NATIVE_TRACKING_METHOD: Ints = Ints::Listed {
    values: &[1, 2],
    vendor_from: VENDOR_CODES_MIN,
};

/// Floors, prices per second, multipliers' sources: never negative.
pub(crate) const MONEY: Nums = Nums::NotNegative;
/// `device.geo.lat`.
pub(crate) const LATITUDE: Nums = Nums::Between(-90.0, 90.0);
/// `device.geo.lon`.
pub(crate) const LONGITUDE: Nums = Nums::Between(-180.0, 180.0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Rule;

    #[test]
    fn closed_lists_take_their_values_and_the_vendor_range_only() {
        for (ints, ok, refused) in [
            (AUCTION_TYPE, &[1, 2, 500, 9999][..], &[0, 3, 499, -1][..]),
            (NATIVE_CONTEXT, &[1, 3, 500], &[0, 4, 499]),
            (
                NATIVE_CONTEXT_SUBTYPE,
                &[10, 15, 22, 32, 501],
                &[1, 16, 23, 33, 40],
            ),
            (NATIVE_PLACEMENT, &[1, 4, 500], &[0, 5]),
            (NATIVE_EVENT, &[1, 4, 555], &[0, 5]),
            (NATIVE_TRACKING_METHOD, &[1, 2, 500], &[0, 3]),
        ] {
            for &v in ok {
                assert_eq!(ints.check(v), Ok(()), "{ints:?} {v}");
            }
            for &v in refused {
                assert_eq!(ints.check(v), Err(Rule::NotAllowed), "{ints:?} {v}");
            }
        }
    }

    #[test]
    fn open_lists_refuse_only_what_no_list_holds() {
        assert_eq!(CODE.check(42), Ok(()));
        assert_eq!(CODE.check(-1), Err(Rule::MustNotBeNegative));
        assert_eq!(START_DELAY.check(-2), Ok(()));
        assert_eq!(START_DELAY.check(-3), Err(Rule::OutOfRange));
        assert_eq!(POD_POSITION.check(-1), Ok(()));
        assert_eq!(EXTENSION.check(-1), Ok(()));
        assert_eq!(FLAG.check(7), Err(Rule::OutOfRange));
        assert_eq!(UTC_OFFSET.check(-720), Ok(()));
        assert_eq!(UTC_OFFSET.check(900), Err(Rule::OutOfRange));
    }
}
