//! What an agent reports at check-in: any bytes are either refused or read into facts that, when
//! they pass the bounds check, are stored as JSON that reads back into the same facts and stays
//! within the size the bounds allow.
#![no_main]

use gatehouse::endpoints::facts::DeviceFacts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(facts) = gatehouse::json::parse::<DeviceFacts>(body) else { return };
    if facts.check().is_err() {
        return;
    }
    let stored = serde_json::to_value(&facts).expect("facts serialise");
    let again: DeviceFacts = serde_json::from_value(stored).expect("stored facts read back");
    assert_eq!(again, facts);
});
