use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = imagelabel::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.runtime_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(imagelabel::cli::main(cli))
}
