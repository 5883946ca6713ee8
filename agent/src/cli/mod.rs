//! Subcommands. Each returns `Result<(), Exit>`; `main` prints the error and exits.

mod authenticate;
mod configdrive;
mod document;
pub mod exit;
mod generate;
mod iso;
mod lookup;
mod provision;
mod safety;
mod validate;

use clap::{CommandFactory, Parser, Subcommand};
use document::DiskScope;
use exit::Exit;
use imprint::runner::log;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "imprint",
    version,
    about = "Image-based bare-metal provisioning agent"
)]
struct Cli {
    /// Print debug lines (commands run, HTTP retries).
    #[arg(long, short, global = true)]
    verbose: bool,
    /// Print no progress and no informational lines; warnings, errors and results still show.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ramdisk mode: find the document (kernel command line, boot ISO, IMPRINT medium), apply it, report, finish.
    Run(provision::RunArgs),
    /// Plan, show what will be destroyed, ask, and provision this machine's disks.
    Apply(provision::ApplyArgs),
    /// Print the fully explicit, resolved plan (nothing is touched).
    Plan(provision::PlanArgs),
    /// Check a document (nothing is touched, no disks needed).
    Validate {
        /// Path, URL (http, https, file) or `-` for stdin.
        document: String,
        /// Print the result as JSON: `ok`, and every error with its path, line, column and message.
        #[arg(long)]
        json: bool,
    },
    /// List block devices with the attributes disk hints match on.
    Disks {
        /// Print the inventory as JSON (what `plan --inventory` reads).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        scope: DiskScope,
    },
    /// Print this machine's inventory as JSON: DMI identity, CPUs, memory, firmware, TPM, NICs, disks.
    Inventory {
        /// Listen this many seconds for LLDP on each NIC with carrier (0: do not listen).
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        lldp: u64,
    },
    /// Print a JSON Schema: of the document (default), the plan, the host inventory, the disk list or a report event.
    Schema {
        #[arg(value_enum, default_value_t)]
        kind: imprint::schema::Kind,
    },
    /// Stream one image onto a device or file (the write-image step alone).
    WriteImage(provision::WriteImageArgs),
    /// Write a document's configdrive onto a device, a file or a directory (the configdrive step alone).
    Configdrive(configdrive::ConfigdriveArgs),
    /// Read or write the reserved customization area of imprint.iso.
    Iso {
        #[command(subcommand)]
        cmd: iso::IsoCommand,
    },
    /// Configure IPv6 on one interface as the ramdisk does (RS/RA, DHCPv6, wait for an
    /// address) and print the result as JSON; for tests in a network namespace.
    #[command(hide = true)]
    NetProbe {
        /// The interface.
        #[arg(long)]
        iface: String,
        /// An `ip=` IPv6 word: dhcp6, auto6, either6, or ra (as the router says; default).
        #[arg(long, default_value = "ra")]
        mode: String,
        /// Seconds to wait (imprint.net6_timeout=).
        #[arg(long, default_value_t = 40)]
        timeout: u64,
    },
    /// Write man pages and shell completions into DIR (`make agent` does, into out/).
    #[command(hide = true)]
    GenerateDocs {
        /// Receives man/*.1 and completions/{imprint.bash,_imprint,imprint.fish}.
        dir: PathBuf,
    },
}

pub use provision::ramdisk_apply;

/// Parses arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    log::set_verbose(cli.verbose);
    log::set_quiet(cli.quiet);
    let res = match cli.cmd {
        Cmd::Run(a) => provision::run(a),
        Cmd::Apply(a) => provision::apply(a),
        Cmd::Plan(a) => provision::plan(a),
        Cmd::Validate { document, json } => validate::validate(&document, json),
        Cmd::Disks { json, scope } => disks(json, &scope),
        Cmd::Inventory { lldp } => inventory(lldp),
        Cmd::Schema { kind } => schema(kind),
        Cmd::WriteImage(a) => provision::write_image(a),
        Cmd::Configdrive(a) => configdrive::configdrive(a),
        Cmd::Iso { cmd } => iso::run(&cmd),
        Cmd::NetProbe {
            iface,
            mode,
            timeout,
        } => net_probe(&iface, &mode, timeout),
        Cmd::GenerateDocs { dir } => generate::generate(Cli::command(), &dir),
    };
    match res {
        Ok(()) => exit::OK,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("imprint: error: {}", e.message);
            }
            e.code
        }
    }
}

fn disks(json: bool, scope: &DiskScope) -> Result<(), Exit> {
    let inv = document::inventory(scope)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&inv).map_err(anyhow::Error::from)?
        );
    } else {
        print!("{}", imprint::disks::render_table(&inv));
        authenticate::print_trust_root();
    }
    Ok(())
}

fn inventory(lldp: u64) -> Result<(), Exit> {
    let inv = imprint::inventory::collect(&imprint::inventory::Options {
        lldp: std::time::Duration::from_secs(lldp),
        ..Default::default()
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&inv).map_err(anyhow::Error::from)?
    );
    Ok(())
}

fn net_probe(iface: &str, mode: &str, timeout: u64) -> Result<(), Exit> {
    use imprint::boot::{ip_arg, net6};
    let mode = match (mode, ip_arg::parse_ip(mode)) {
        ("ra", _) => ip_arg::V6Mode::Ra,
        (_, Ok(ip_arg::IpConfig::V6 { mode, .. })) => mode,
        _ => {
            return Err(
                anyhow::anyhow!("--mode {mode}: expected ra, dhcp6, auto6 or either6").into(),
            )
        }
    };
    let c = net6::configure(iface, mode, std::time::Duration::from_secs(timeout))
        .map_err(anyhow::Error::from)?;
    let json = serde_json::json!({
        "iface": c.dev,
        "address": c.addr.to_string(),
        "prefix": c.prefix,
        "gateway": c.gateway.to_string(),
        "how": c.how,
        "dns": c.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "search": c.search,
    });
    println!("{json}");
    Ok(())
}

fn schema(kind: imprint::schema::Kind) -> Result<(), Exit> {
    let s = imprint::schema::of(kind);
    println!(
        "{}",
        serde_json::to_string_pretty(&s).map_err(anyhow::Error::from)?
    );
    Ok(())
}
