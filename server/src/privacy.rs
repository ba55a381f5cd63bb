//! Keeps callers' data out of logs and metrics: a routing key (a user or
//! session id) is only ever written as a keyed hash, never in clear.
//!
//! The hash is HMAC-SHA256 under a key drawn at random when the process
//! first needs it, cut to 16 hex characters. Within one server process the
//! same routing key always gives the same hash, so the log lines of one
//! user's calls can be followed; without the key, nobody can confirm a
//! guessed id against a log, and hashes do not link across restarts or
//! across servers.
//!
//! Feature values are not hashed: they never reach a log line or a metric
//! label at all. Status messages, which may quote an offending cell (see
//! `encoder`), go to the caller only; call logging (`request_context`)
//! records the status code, never the message.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex characters of the MAC kept: 64 bits, enough to tell apart every
/// routing key a log will ever see.
const HASH_HEX_CHARS: usize = 16;

/// HMAC-SHA256 under one secret key. Deliberately not `Debug`: the key
/// must not reach a log either.
#[derive(Clone)]
pub struct KeyedHasher {
    keyed: Hmac<Sha256>,
}

impl KeyedHasher {
    pub fn new(key: &[u8]) -> Self {
        KeyedHasher {
            keyed: Hmac::new_from_slice(key).expect("HMAC takes a key of any length"),
        }
    }

    /// A hasher with a fresh random 256-bit key.
    pub fn random() -> Self {
        Self::new(&rand::random::<[u8; 32]>())
    }

    /// The first 16 hex characters of HMAC-SHA256(key, `value`).
    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        let mut hex = hex::encode(mac.finalize().into_bytes());
        hex.truncate(HASH_HEX_CHARS);
        hex
    }
}

/// `routing_key` as logs may show it: keyed with this process's random key.
pub fn routing_key_hash(routing_key: &str) -> String {
    static PROCESS_HASHER: OnceLock<KeyedHasher> = OnceLock::new();
    PROCESS_HASHER.get_or_init(KeyedHasher::random).hash(routing_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_hmac_sha256_reference() {
        // RFC 4231, test case 2.
        let hasher = KeyedHasher::new(b"Jefe");
        assert_eq!(hasher.hash("what do ya want for nothing?"), "5bdcc146bf60754e");
    }

    #[test]
    fn one_key_is_stable_and_keys_differ() {
        let hasher = KeyedHasher::random();
        assert_eq!(hasher.hash("user-1"), hasher.hash("user-1"));
        assert_ne!(hasher.hash("user-1"), hasher.hash("user-2"));
        assert_ne!(hasher.hash("user-1"), KeyedHasher::random().hash("user-1"));
    }

    #[test]
    fn the_process_hash_is_stable_and_not_the_key() {
        let hash = routing_key_hash("user-99817263");
        assert_eq!(hash, routing_key_hash("user-99817263"));
        assert_eq!(hash.len(), HASH_HEX_CHARS);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!hash.contains("99817263"));
    }
}
