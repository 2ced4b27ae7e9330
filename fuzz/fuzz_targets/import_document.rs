//! Flow import documents (YAML or JSON): any bytes are either refused with a message or read into
//! a version 1 blueprint, within the import's bounds on size and expansion.
#![no_main]

use gatehouse::flows::transfer::parse_document;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|document: &[u8]| {
    match parse_document(document) {
        Ok(blueprint) => assert_eq!(blueprint.version, 1),
        Err(message) => assert!(!message.is_empty()),
    }
});
