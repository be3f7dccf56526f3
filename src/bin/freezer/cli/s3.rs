//! `--storage s3` options: freezer-agent's three, and the AWS ones it lacked.

use clap::{Args, ValueEnum};

/// S3 settings. Keys also come from ACCESS_KEY/SECRET_KEY (freezer-agent's), the AWS_*
/// variables and `~/.aws/credentials` (AWS_PROFILE).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "S3")]
pub struct S3Flags {
    /// Access key id [env: ACCESS_KEY, AWS_ACCESS_KEY_ID].
    #[arg(long, value_name = "KEY")]
    pub access_key: Option<String>,
    /// Secret key; prefer SECRET_KEY, AWS_SECRET_ACCESS_KEY or a --config file: on the
    /// command line it is visible to every user of the machine.
    #[arg(long, value_name = "SECRET", hide_short_help = true)]
    pub secret_key: Option<String>,
    /// The S3 service's URL, e.g. http://127.0.0.1:8080 (default: AWS) [env: ENDPOINT,
    /// AWS_ENDPOINT_URL].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Signing region (default us-east-1) [env: AWS_REGION, AWS_DEFAULT_REGION].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// path (bucket in the URL's path; the default with --endpoint) or virtual (bucket in
    /// the host name; the default for AWS).
    #[arg(long, value_enum, value_name = "STYLE")]
    pub s3_addressing: Option<S3Addressing>,
}

/// `--s3-addressing`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Addressing {
    Path,
    Virtual,
}
