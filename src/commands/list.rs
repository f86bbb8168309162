//! `berth list`: the containers under `--root`, as a table or JSON.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Output format
    #[arg(short, long, value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
    /// Print only the ids
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let mut rows = Vec::new();
    for id in global.root.ids()? {
        // A container being created or deleted right now has no readable state: skip it.
        let Ok(state) = global.root.read_state(&id) else {
            continue;
        };
        let status = berth::container::status(&state, &global.root.container_dir(&id));
        rows.push(berth::container::oci_state(&state, status));
    }
    if args.quiet {
        for row in &rows {
            println!("{}", row["id"].as_str().unwrap_or_default());
        }
    } else if args.format == "json" {
        println!("{}", serde_json::Value::Array(rows));
    } else {
        let table: Vec<[String; 6]> = rows
            .iter()
            .map(|r| {
                let text = |k: &str| match &r[k] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                [
                    text("id"),
                    text("pid"),
                    text("status"),
                    text("bundle"),
                    text("created"),
                    text("owner"),
                ]
            })
            .collect();
        let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
        let widths: Vec<usize> = (0..6)
            .map(|i| {
                std::iter::once(&header)
                    .chain(&table)
                    .map(|r| r[i].len())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(&header).chain(&table) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", line.join("   ").trim_end());
        }
    }
    Ok(0)
}
