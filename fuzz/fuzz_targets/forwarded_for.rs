//! The client address behind trusted proxies: any `X-Forwarded-For` header lines give an address,
//! the peer itself when the peer is not trusted.
#![no_main]

use std::net::IpAddr;

use gatehouse::events::client::client_ip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &str)| {
    let (peer_trusted, header) = input;
    let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()];
    let peer: IpAddr = if peer_trusted { "10.1.2.3".parse().unwrap() } else { "192.0.2.7".parse().unwrap() };
    let lines: Vec<&str> = header.split('\n').collect();
    let client = client_ip(Some(peer), lines.iter().copied(), &trusted).expect("a peer always gives an address");
    if !peer_trusted {
        assert_eq!(client, peer);
    }
    assert_eq!(client_ip(None, lines.iter().copied(), &trusted), None);
});
