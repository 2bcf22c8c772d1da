//! Any two strings read as Debian versions parse or are refused, never panic; versions that
//! parse are ordered as an order must be (each equal to itself, the order of two reversed when
//! they swap) and read back the same from what they print.
#![no_main]

use std::cmp::Ordering;

use envkit::debian::version::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (left, right) = text.split_once('\n').unwrap_or((text, ""));
    let (Ok(a), Ok(b)) = (left.parse::<Version>(), right.parse::<Version>()) else {
        return;
    };
    assert_eq!(a.cmp(&a), Ordering::Equal);
    assert_eq!(a.cmp(&b), b.cmp(&a).reverse(), "{a} and {b}");
    assert_eq!(a == b, a.cmp(&b) == Ordering::Equal, "{a} and {b}");
    let again: Version = a.to_string().parse().expect("a printed version parses");
    assert_eq!(again.cmp(&a), Ordering::Equal, "{a} printed as {again}");
});
