//! Why a set could not get a cloud client, typed so the controller can tell
//! a credentials problem from a bad region in the set's status.

use super::CloudError;
use super::credentials::CredentialError;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Credentials could not be read or are malformed (Secret keys,
    /// environment, token file, STS).
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The region (the set's or the operator's default) cannot be a
    /// region name: it would become part of a host name.
    #[error("region `{region}`: {reason}")]
    Region { region: String, reason: String },
    /// Anything else building the client.
    #[error(transparent)]
    Client(CloudError),
}

impl AccessError {
    /// A stable snake_case word for a metric label.
    pub fn kind_label(&self) -> &'static str {
        match self {
            AccessError::Credentials(_) => "credentials",
            AccessError::Region { .. } => "region",
            AccessError::Client(_) => "client",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ErrorKind;

    #[test]
    fn labels_and_messages() {
        let creds = AccessError::from(CredentialError::NotUtf8("sk"));
        assert_eq!(creds.kind_label(), "credentials");
        assert_eq!(
            creds.to_string(),
            "credentials Secret key `sk` is not valid UTF-8"
        );
        let region = AccessError::Region {
            region: "a/b".into(),
            reason: "no".into(),
        };
        assert_eq!(region.kind_label(), "region");
        assert_eq!(region.to_string(), "region `a/b`: no");
        let client = AccessError::Client(CloudError::new(ErrorKind::Invalid, "client", "x"));
        assert_eq!(client.kind_label(), "client");
        assert_eq!(client.to_string(), "client failed: x");
    }
}
