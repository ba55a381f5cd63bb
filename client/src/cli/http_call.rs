//! HTTP/1.1 POSTs of pre-encoded JSON bodies, for the load generator's
//! Open Inference Protocol runs over HTTP: one keep-alive connection per
//! caller (HTTP/1.1 carries one request at a time), reconnecting when the
//! server closes it; only the status of the answer is checked.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// A client that posts bodies to one server over its own connection.
pub struct HttpCaller {
    address: String,
    authorization: Option<String>,
    traceparent: Option<String>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl HttpCaller {
    /// `address` is `host:port`; `authorization` a whole header value.
    pub fn new(address: String, authorization: Option<String>, traceparent: Option<String>) -> Self {
        HttpCaller {
            address,
            authorization,
            traceparent,
            connection: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {} failed: {e}", self.address))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Posts `body` to `path`; the answer's HTTP status, or why none came.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<u16, String> {
        let mut sender = match self.connection.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut request = http::Request::post(path)
            .header(http::header::HOST, &self.address)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(value) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        if let Some(value) = &self.traceparent {
            request = request.header("traceparent", value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        // The whole answer is read, so the connection can carry the next.
        response.into_body().collect().await.map_err(|e| e.to_string())?;
        self.connection = Some(sender);
        Ok(status)
    }
}
