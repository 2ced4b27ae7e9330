//! E-mail addresses and phone numbers: any text either fails or parses to a value whose text
//! form parses back to the same value.
#![no_main]

use gatehouse_types::{Email, PhoneNumber as Phone};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(email) = Email::parse(text) {
        assert_eq!(Email::parse(email.as_str()).as_ref().map(Email::as_str), Ok(email.as_str()));
    }
    if let Ok(phone) = Phone::parse(text) {
        assert_eq!(Phone::parse(phone.as_str()).as_ref().map(Phone::as_str), Ok(phone.as_str()));
    }
});
