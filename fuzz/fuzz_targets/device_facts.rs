//! What an agent reports at check-in: any bytes are either refused or read (control characters
//! replaced) into facts that, when they pass the bounds check, are stored as JSON that reads back
//! into the same facts, no larger than the body they came from allows.
#![no_main]

use gatehouse::endpoints::facts::DeviceFacts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(facts) = gatehouse::json::parse_replacing_controls::<DeviceFacts>(body) else { return };
    if facts.check().is_err() {
        return;
    }
    let stored = serde_json::to_value(&facts).expect("facts serialise");
    // Each replaced character grows by at most two bytes; dropped unknown fields only shrink it.
    assert!(stored.to_string().len() <= body.len() * 3 + 2, "{} from {}", stored.to_string().len(), body.len());
    let again: DeviceFacts = serde_json::from_value(stored).expect("stored facts read back");
    assert_eq!(again, facts);
});
