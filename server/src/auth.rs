//! Bearer-token access control. Tokens come from a file or the environment,
//! each with a role: `predict` (Predict, ListModels and every read-only
//! RPC) or `admin` (everything, including Train and rollout changes).
//!
//! Authentication is a tonic interceptor: it checks the `authorization:
//! Bearer <token>` header (UNAUTHENTICATED when missing or unknown) and
//! attaches the [`Caller`] to the request. Authorisation is per RPC: each
//! admin RPC calls [`require_admin`] (PERMISSION_DENIED for `predict`
//! tokens). With no tokens configured, every caller is an anonymous admin.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Predict,
    Admin,
}

/// Who made a call, attached to the request by the interceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The configured tokens, kept as SHA-256 digests.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Caller>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses entries `role:name:token` separated by commas or newlines;
    /// blank lines and lines starting with `#` are skipped. The error names
    /// the bad entry by number (never its token).
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        let entries = text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let mut parts = entry.splitn(3, ':');
            let (role, name, token) = match (parts.next(), parts.next(), parts.next()) {
                (Some(role), Some(name), Some(token)) if !name.is_empty() && token.len() >= 8 => {
                    (role, name, token)
                }
                _ => {
                    return Err(format!(
                        "token entry {}: expected role:name:token with a token of at least 8 characters",
                        i + 1
                    ));
                }
            };
            let role = match role {
                "admin" => Role::Admin,
                "predict" => Role::Predict,
                other => {
                    return Err(format!(
                        "token entry {}: unknown role {other:?} (admin or predict)",
                        i + 1
                    ));
                }
            };
            tokens.by_digest.insert(
                digest(token),
                Caller {
                    name: name.to_string(),
                    role,
                },
            );
        }
        Ok(tokens)
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    fn caller(&self, token: &str) -> Option<&Caller> {
        // Comparing digests: the lookup time does not depend on how much of
        // a guessed token is right.
        self.by_digest.get(&digest(token))
    }
}

/// The server-side interceptor: authenticates every call.
#[derive(Clone)]
pub struct AuthInterceptor {
    tokens: Arc<Tokens>,
}

impl AuthInterceptor {
    pub fn new(tokens: Tokens) -> Self {
        AuthInterceptor {
            tokens: Arc::new(tokens),
        }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if self.tokens.is_empty() {
            request.extensions_mut().insert(Caller {
                name: String::new(),
                role: Role::Admin,
            });
            return Ok(request);
        }
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?;
        let caller = self
            .tokens
            .caller(token.trim())
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// Refuses the call unless its caller holds the admin role.
pub fn require_admin<T>(request: &Request<T>, rpc: &str) -> Result<(), Status> {
    match request.extensions().get::<Caller>() {
        Some(Caller {
            role: Role::Admin, ..
        }) => Ok(()),
        Some(caller) => Err(Status::permission_denied(format!(
            "{rpc} needs an admin token; {:?} holds a predict token",
            caller.name
        ))),
        None => Err(Status::unauthenticated("no caller identity")),
    }
}

/// The authenticated caller's name, if tokens are in use.
pub fn caller_name<T>(request: &Request<T>) -> Option<&str> {
    request
        .extensions()
        .get::<Caller>()
        .map(|c| c.name.as_str())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_names_bad_ones() {
        let tokens =
            Tokens::parse("# ops\nadmin:alice:s3cret-admin\npredict:checkout:t0ken-checkout, ").unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.caller("s3cret-admin").unwrap().role, Role::Admin);
        assert_eq!(tokens.caller("t0ken-checkout").unwrap().name, "checkout");
        assert!(tokens.caller("nope").is_none());
        for bad in [
            "admin:alice",
            "root:x:long-enough-token",
            "admin::long-enough",
            "admin:a:short",
        ] {
            let err = Tokens::parse(bad).unwrap_err();
            assert!(err.contains("entry 1"), "{err}");
            assert!(
                !err.contains("long-enough"),
                "the error must not echo the token: {err}"
            );
        }
    }

    #[test]
    fn the_interceptor_authenticates_and_require_admin_authorises() {
        let mut interceptor =
            AuthInterceptor::new(Tokens::parse("admin:a:admin-token,predict:p:predict-token").unwrap());
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(value) = value {
                request
                    .metadata_mut()
                    .insert("authorization", value.parse().unwrap());
            }
            request
        };
        assert_eq!(
            interceptor.call(with(None)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            interceptor.call(with(Some("Bearer wrong"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            interceptor.call(with(Some("admin-token"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let predict = interceptor.call(with(Some("Bearer predict-token"))).unwrap();
        assert_eq!(
            require_admin(&predict, "Train").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let admin = interceptor.call(with(Some("Bearer admin-token"))).unwrap();
        require_admin(&admin, "Train").unwrap();
        assert_eq!(caller_name(&admin), Some("a"));

        let mut open = AuthInterceptor::new(Tokens::default());
        require_admin(&open.call(with(None)).unwrap(), "Train").unwrap();
    }
}
