//! The Open Inference Protocol's HTTP paths as plain data: which endpoint a
//! method and path name, or why none does. Owns no handler and no I/O.

use http::Method;

/// A model, and the version the path pins, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPath {
    pub name: String,
    pub version: Option<u32>,
}

/// An endpoint of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2`
    ServerMetadata,
    /// `GET /v2/health/live`
    Live,
    /// `GET /v2/health/ready`
    Ready,
    /// `GET /v2/models/{name}[/versions/{v}]`
    ModelMetadata(ModelPath),
    /// `GET /v2/models/{name}[/versions/{v}]/ready`
    ModelReady(ModelPath),
    /// `POST /v2/models/{name}[/versions/{v}]/infer`
    Infer(ModelPath),
}

/// Why a request names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoEndpoint {
    NotFound,
    /// The path is an endpoint's, the method is not; `allow` is its method.
    MethodNotAllowed {
        allow: Method,
    },
    /// `/versions/{v}` with something other than a version number.
    BadVersion(String),
}

impl Endpoint {
    /// A fixed name for logs and metric labels (never the path, which
    /// carries model names and anything a caller types).
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::ServerMetadata => "server_metadata",
            Endpoint::Live => "health_live",
            Endpoint::Ready => "health_ready",
            Endpoint::ModelMetadata(_) => "model_metadata",
            Endpoint::ModelReady(_) => "model_ready",
            Endpoint::Infer(_) => "infer",
        }
    }

    /// Whether the caller must hold a token (when tokens are configured):
    /// everything but health and the server's own metadata.
    pub fn needs_token(&self) -> bool {
        matches!(
            self,
            Endpoint::ModelMetadata(_) | Endpoint::ModelReady(_) | Endpoint::Infer(_)
        )
    }

    fn method(&self) -> Method {
        match self {
            Endpoint::Infer(_) => Method::POST,
            _ => Method::GET,
        }
    }
}

/// The endpoint `method` and `path` name.
pub fn resolve(method: &Method, path: &str) -> Result<Endpoint, NoEndpoint> {
    let endpoint = endpoint(path)?;
    if *method != endpoint.method() {
        return Err(NoEndpoint::MethodNotAllowed {
            allow: endpoint.method(),
        });
    }
    Ok(endpoint)
}

fn endpoint(path: &str) -> Result<Endpoint, NoEndpoint> {
    let segments: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return Err(NoEndpoint::NotFound),
    };
    match segments.as_slice() {
        ["v2"] => Ok(Endpoint::ServerMetadata),
        ["v2", "health", "live"] => Ok(Endpoint::Live),
        ["v2", "health", "ready"] => Ok(Endpoint::Ready),
        ["v2", "models", name, rest @ ..] if !name.is_empty() => {
            let (version, action) = match rest {
                ["versions", version, action @ ..] => (Some(parse_version(version)?), action),
                action => (None, action),
            };
            let model = ModelPath {
                name: name.to_string(),
                version,
            };
            match action {
                [] => Ok(Endpoint::ModelMetadata(model)),
                ["ready"] => Ok(Endpoint::ModelReady(model)),
                ["infer"] => Ok(Endpoint::Infer(model)),
                _ => Err(NoEndpoint::NotFound),
            }
        }
        _ => Err(NoEndpoint::NotFound),
    }
}

fn parse_version(text: &str) -> Result<u32, NoEndpoint> {
    crate::oip::parse_version(text).map_err(NoEndpoint::BadVersion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, version: Option<u32>) -> ModelPath {
        ModelPath {
            name: name.to_string(),
            version,
        }
    }

    #[test]
    fn paths_name_their_endpoints() {
        let get = |path| resolve(&Method::GET, path);
        assert_eq!(get("/v2"), Ok(Endpoint::ServerMetadata));
        assert_eq!(get("/v2/health/live"), Ok(Endpoint::Live));
        assert_eq!(get("/v2/health/ready"), Ok(Endpoint::Ready));
        assert_eq!(
            get("/v2/models/shoppers"),
            Ok(Endpoint::ModelMetadata(model("shoppers", None)))
        );
        assert_eq!(
            get("/v2/models/shoppers/versions/3"),
            Ok(Endpoint::ModelMetadata(model("shoppers", Some(3))))
        );
        assert_eq!(
            get("/v2/models/shoppers/ready"),
            Ok(Endpoint::ModelReady(model("shoppers", None)))
        );
        assert_eq!(
            get("/v2/models/shoppers/versions/2/ready"),
            Ok(Endpoint::ModelReady(model("shoppers", Some(2))))
        );
        assert_eq!(
            resolve(&Method::POST, "/v2/models/shoppers/versions/2/infer"),
            Ok(Endpoint::Infer(model("shoppers", Some(2))))
        );
        assert_eq!(
            resolve(&Method::POST, "/v2/models/shoppers/infer"),
            Ok(Endpoint::Infer(model("shoppers", None)))
        );
    }

    #[test]
    fn other_paths_and_methods_are_refused_with_the_reason() {
        for path in [
            "",
            "/",
            "/v1",
            "/v2/",
            "/v2/health",
            "/v2/models",
            "/v2/models/",
            "/v2/models/x/versions",
            "/v2/models/x/explain",
            "/v2/models/x/versions/1/infer/more",
            "/metrics",
        ] {
            assert_eq!(resolve(&Method::GET, path), Err(NoEndpoint::NotFound), "{path}");
        }
        assert_eq!(
            resolve(&Method::GET, "/v2/models/x/infer"),
            Err(NoEndpoint::MethodNotAllowed { allow: Method::POST })
        );
        assert_eq!(
            resolve(&Method::POST, "/v2/health/live"),
            Err(NoEndpoint::MethodNotAllowed { allow: Method::GET })
        );
        assert!(matches!(
            resolve(&Method::GET, "/v2/models/x/versions/latest"),
            Err(NoEndpoint::BadVersion(message)) if message.contains("\"latest\"")
        ));
    }

    #[test]
    fn only_model_endpoints_need_a_token() {
        assert!(!Endpoint::Live.needs_token());
        assert!(!Endpoint::Ready.needs_token());
        assert!(!Endpoint::ServerMetadata.needs_token());
        assert!(Endpoint::ModelMetadata(model("x", None)).needs_token());
        assert!(Endpoint::ModelReady(model("x", None)).needs_token());
        assert!(Endpoint::Infer(model("x", None)).needs_token());
    }
}
