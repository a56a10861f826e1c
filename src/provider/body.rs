//! Cloud answers are read up to a cap. An answer is parsed whole (JSON), so
//! without a cap a misbehaving or hostile endpoint decides how much memory
//! the operator uses; every real answer of these APIs (a page of labels, an
//! error, an STS token) is a few KiB.

use super::{CloudError, ErrorKind};

/// The largest answer read from any cloud API.
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 << 20;

fn too_large(api: &'static str, max: usize) -> CloudError {
    CloudError::new(
        ErrorKind::Invalid,
        api,
        format!("{api}: the answer is larger than {max} bytes; refused without reading it all"),
    )
}

/// The body of `resp`, or an error naming `api` once it passes `max` bytes
/// (before reading anything when the length is announced).
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    api: &'static str,
    max: usize,
) -> Result<Vec<u8>, CloudError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(too_large(api, max));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| super::http::transport_error(api, &e))?
    {
        if out.len() + chunk.len() > max {
            return Err(too_large(api, max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one answer of `size` bytes, announced or not, then closes.
    async fn serve(size: usize, announce: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = if announce {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_string()
            };
            s.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 64 << 10];
            let mut sent = 0;
            while sent < size {
                let n = chunk.len().min(size - sent);
                if s.write_all(&chunk[..n]).await.is_err() {
                    return; // the client hung up: what a cap should do
                }
                sent += n;
            }
        });
        format!("http://{addr}/")
    }

    async fn fetch(size: usize, announce: bool) -> Result<Vec<u8>, CloudError> {
        let url = serve(size, announce).await;
        let http = crate::provider::http::http_client(std::time::Duration::from_secs(30)).unwrap();
        let resp = http.get(url).send().await.unwrap();
        read_capped(resp, "ListImageLabels", MAX_RESPONSE_BYTES).await
    }

    #[tokio::test]
    async fn a_400_mib_answer_is_refused_naming_the_api() {
        for announce in [true, false] {
            let e = fetch(400 << 20, announce).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid);
            assert!(e.message.contains("ListImageLabels"), "{e}");
            assert!(e.message.contains(&MAX_RESPONSE_BYTES.to_string()), "{e}");
        }
    }

    #[tokio::test]
    async fn answers_up_to_the_cap_are_read_whole() {
        for announce in [true, false] {
            let body = fetch(MAX_RESPONSE_BYTES, announce).await.unwrap();
            assert_eq!(body.len(), MAX_RESPONSE_BYTES);
        }
    }
}
