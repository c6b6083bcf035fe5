//! Owns [`MediaTypes`]: the media kinds (banner, video, audio, native) as bits, shared by the
//! request (what an impression offers) and the bid checks (what a bid's `mtype` declares), so
//! neither module reaches into the other.

/// Which media objects an impression offers, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaTypes(u8);

impl MediaTypes {
    /// `imp.banner` present.
    pub const BANNER: MediaTypes = MediaTypes(1);
    /// `imp.video` present.
    pub const VIDEO: MediaTypes = MediaTypes(2);
    /// `imp.audio` present.
    pub const AUDIO: MediaTypes = MediaTypes(4);
    /// `imp.native` present.
    pub const NATIVE: MediaTypes = MediaTypes(8);
    /// Every media type (a DSP policy's default, [`crate::roster`]).
    pub const ALL: MediaTypes = MediaTypes(15);

    /// These bits plus `other`'s.
    pub const fn with(self, other: MediaTypes) -> MediaTypes {
        MediaTypes(self.0 | other.0)
    }

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: MediaTypes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set here.
    pub fn intersects(self, other: MediaTypes) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no media type is present.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn insert(&mut self, other: MediaTypes) {
        self.0 |= other.0;
    }

    /// The media type a `bid.mtype` declares; `None` for values 2.6 does not define (which
    /// are then not checked: 2.6 §2.6 asks to tolerate new list values).
    pub fn from_mtype(mtype: u32) -> Option<MediaTypes> {
        match mtype {
            1 => Some(MediaTypes::BANNER),
            2 => Some(MediaTypes::VIDEO),
            3 => Some(MediaTypes::AUDIO),
            4 => Some(MediaTypes::NATIVE),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtype_codes() {
        assert_eq!(MediaTypes::from_mtype(1), Some(MediaTypes::BANNER));
        assert_eq!(MediaTypes::from_mtype(4), Some(MediaTypes::NATIVE));
        assert_eq!(MediaTypes::from_mtype(0), None);
        assert_eq!(MediaTypes::from_mtype(5), None);
    }
}
