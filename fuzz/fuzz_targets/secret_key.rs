//! API keys and app passwords as presented: any text either fails or parses to a key that
//! parses again to itself.
#![no_main]

use gatehouse::tokens::key::SecretKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(key) = SecretKey::parse(text) {
        let again = SecretKey::parse(key.expose()).expect("a parsed key parses again");
        assert_eq!(again.expose(), key.expose());
        assert_eq!(again.kind(), key.kind());
        let _ = key.looks_random();
    }
});
