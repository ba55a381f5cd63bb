//! Prediction ids: how they are made and read back. An id is
//! `<replica tag>-<issued at>-<secret>` in lower-case hex: the tag (4
//! bytes of the SHA-256 of the issuing replica's name) tells which replica
//! holds the prediction, the time (seconds since the Unix epoch) tells an
//! expired id from an unknown one, and the secret — 16 bytes from the
//! thread's CSPRNG, six bits of which choose the store shard — makes it
//! unguessable (122 random bits).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Shards of the outcome store; a power of two.
pub const SHARDS: usize = 64;

/// The tag of one replica's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaTag(u32);

impl ReplicaTag {
    pub fn of(replica_name: &str) -> Self {
        let digest = Sha256::digest(replica_name.as_bytes());
        ReplicaTag(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]))
    }

    /// The tag as a number (as the registry's outcome mailbox keys it).
    pub fn value(self) -> u32 {
        self.0
    }
}

/// The secret part of an id, as the store keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    /// The store's key; its low bits choose the shard.
    pub key: u64,
    /// Checked on lookup, so a key alone matches nothing.
    pub check: u64,
}

impl Secret {
    pub fn shard(&self) -> usize {
        (self.key as usize) & (SHARDS - 1)
    }
}

/// An id read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedId {
    pub tag: ReplicaTag,
    pub issued: u32,
    pub secret: Secret,
}

/// `rows` fresh secrets that all fall in one shard (chosen at random), so
/// that one call's rows are stored under one lock.
pub fn fresh_secrets(rows: usize) -> (usize, Vec<Secret>) {
    let mut bytes = vec![0u8; rows * 16 + 1];
    rand::rng().fill_bytes(&mut bytes);
    let shard = usize::from(bytes[rows * 16]) & (SHARDS - 1);
    let secrets = bytes
        .chunks_exact(16)
        .map(|chunk| {
            let key = u64::from_le_bytes(chunk[..8].try_into().expect("8 bytes"));
            let check = u64::from_le_bytes(chunk[8..].try_into().expect("8 bytes"));
            Secret {
                key: (key & !(SHARDS as u64 - 1)) | shard as u64,
                check,
            }
        })
        .collect();
    (shard, secrets)
}

/// Writes the id of `secret`.
pub fn format(tag: ReplicaTag, issued: u32, secret: Secret) -> String {
    format!(
        "{:08x}-{issued:08x}-{:016x}{:016x}",
        tag.0, secret.key, secret.check
    )
}

/// Reads an id; None when it is not one (of any replica).
pub fn parse(id: &str) -> Option<ParsedId> {
    let bytes = id.as_bytes();
    if bytes.len() != 50 || bytes[8] != b'-' || bytes[17] != b'-' {
        return None;
    }
    let hex = |range: std::ops::Range<usize>| -> Option<u64> {
        let text = id.get(range)?;
        if !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        u64::from_str_radix(text, 16).ok()
    };
    Some(ParsedId {
        tag: ReplicaTag(hex(0..8)? as u32),
        issued: hex(9..17)? as u32,
        secret: Secret {
            key: hex(18..34)?,
            check: hex(34..50)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_and_one_call_shares_a_shard() {
        let tag = ReplicaTag::of("replica-a");
        assert_ne!(tag, ReplicaTag::of("replica-b"));
        let (shard, secrets) = fresh_secrets(50);
        assert_eq!(secrets.len(), 50);
        let mut seen = std::collections::HashSet::new();
        for secret in &secrets {
            assert_eq!(secret.shard(), shard);
            let id = format(tag, 1_800_000_000, *secret);
            assert_eq!(id.len(), 50);
            assert!(seen.insert(id.clone()), "ids are unique");
            assert_eq!(
                parse(&id),
                Some(ParsedId {
                    tag,
                    issued: 1_800_000_000,
                    secret: *secret
                })
            );
        }
    }

    #[test]
    fn what_is_not_an_id_reads_as_none() {
        let id = format(ReplicaTag::of("r"), 7, fresh_secrets(1).1[0]);
        for bad in [
            String::new(),
            "x".into(),
            id.to_uppercase(),
            id.replace('-', "_"),
            format!("{id}0"),
            id[..49].to_string(),
            format!("+{}", &id[1..]),
            format!("{}é", &id[..48]),
        ] {
            assert_eq!(parse(&bad), None, "{bad:?}");
        }
    }
}
