//! The client side of the CRI streaming server for `Exec`: what `kubectl exec` reaches through
//! the API server and kubelet. The runtime's Exec answer is a URL; a WebSocket connection to it
//! speaking `v4.channel.k8s.io` carries the process's output, one channel byte before each
//! message (1 stdout, 2 stderr, 3 the final status as a Kubernetes `Status` object).

use anyhow::{anyhow, bail, Context, Result};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::Message;

const PROTOCOL: &str = "v4.channel.k8s.io";
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// From the status on the error channel: 0 for `Success`, the `ExitCode` cause otherwise.
    pub exit_code: i32,
}

/// Connects to an exec URL (`http://127.0.0.1:PORT/exec/TOKEN`) and reads the session to its
/// end: the process's output and its exit code.
pub fn exec(url: &str) -> Result<Output> {
    let ws_url = url
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .ok_or_else(|| anyhow!("the exec URL {url} is not http:// (TLS streaming is off)"))?;
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad exec URL {url}"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
    let authority = request
        .uri()
        .authority()
        .ok_or_else(|| anyhow!("no host in {url}"))?
        .to_string();
    let stream =
        TcpStream::connect(&authority).with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (mut socket, response) = tungstenite::client(request, stream)
        .map_err(|e| anyhow!("WebSocket handshake with {url}: {e}"))?;
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if agreed != PROTOCOL {
        bail!("the streaming server agreed to protocol {agreed:?}, not {PROTOCOL}");
    }
    let mut output = Output::default();
    let mut status = None;
    loop {
        let message = match socket.read() {
            Ok(message) => message,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => break,
            Err(e) => return Err(anyhow!("reading the exec stream: {e}")),
        };
        let data = match message {
            Message::Binary(data) => data.to_vec(),
            Message::Close(_) => break,
            Message::Text(_) => bail!("a text message on a binary channel protocol"),
            _ => continue,
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            STDOUT => output.stdout.extend_from_slice(payload),
            STDERR => output.stderr.extend_from_slice(payload),
            ERROR if !payload.is_empty() => status = Some(payload.to_vec()),
            _ => {}
        }
    }
    let status = status.ok_or_else(|| anyhow!("the exec session ended without a status"))?;
    output.exit_code = exit_code(&status)?;
    Ok(output)
}

/// The exit code in a v4 status: `{"status":"Success"}` is 0; a failure carries it as the
/// `ExitCode` cause, e.g. `{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":
/// [{"reason":"ExitCode","message":"3"}]}}`.
fn exit_code(status: &[u8]) -> Result<i32> {
    let text = String::from_utf8_lossy(status);
    let value: serde_json::Value = serde_json::from_slice(status)
        .with_context(|| format!("the exec status {text} is not JSON"))?;
    if value["status"] == "Success" {
        return Ok(0);
    }
    value["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|cause| cause["reason"] == "ExitCode")
        .and_then(|cause| cause["message"].as_str())
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("the exec failed: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_status() {
        assert_eq!(
            exit_code(br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            0
        );
        let failure = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_code(failure).unwrap(), 3);
        let other = br#"{"status":"Failure","message":"no such container"}"#;
        assert!(exit_code(other)
            .unwrap_err()
            .to_string()
            .contains("no such container"));
    }
}
