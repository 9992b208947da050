//! `bootcfg validate` and `bootcfg schema`.

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// User-data files to check.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {}

pub fn validate(_args: ValidateArgs) -> u8 {
    eprintln!("bootcfg validate: not built yet");
    1
}

pub fn schema(_args: SchemaArgs) -> u8 {
    eprintln!("bootcfg schema: not built yet");
    1
}
