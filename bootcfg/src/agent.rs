//! `bootcfg run`, `plan`, `apply` and `status`.

#[derive(Debug, clap::Args)]
pub struct RunArgs {}
#[derive(Debug, clap::Args)]
pub struct PlanArgs {}
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {}
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

pub fn run(_args: RunArgs) -> u8 {
    eprintln!("bootcfg run: not built yet");
    1
}
pub fn plan(_args: PlanArgs) -> u8 {
    eprintln!("bootcfg plan: not built yet");
    1
}
pub fn apply(_args: ApplyArgs) -> u8 {
    eprintln!("bootcfg apply: not built yet");
    1
}
pub fn status(_args: StatusArgs) -> u8 {
    eprintln!("bootcfg status: not built yet");
    1
}
