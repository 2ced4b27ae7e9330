//! Duration strings: any text either fails with an error or parses to a value whose canonical
//! form parses back to the same value.
#![no_main]

use gatehouse_types::DurationString;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(duration) = DurationString::parse(text) {
        assert!(duration.as_micros() >= 0);
        let canonical = duration.to_string();
        assert_eq!(DurationString::parse(&canonical), Ok(duration), "{text:?} → {canonical:?}");
    }
});
