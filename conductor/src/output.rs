//! Results on stdout: aligned tables or JSON.

use crate::cli::Format;
use crate::launch::LaunchResult;
use serde::Serialize;

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn launch_results(results: &[LaunchResult], format: Format) -> anyhow::Result<()> {
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    match format {
        Format::Json => print_json(&serde_json::json!({
            "launched": results.len() - failed,
            "failed": failed,
            "results": results,
        })),
        Format::Text => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| {
                    vec![
                        r.certname.clone(),
                        r.instance_id.clone().unwrap_or_else(|| "-".into()),
                        r.state.clone(),
                    ]
                })
                .collect();
            table(&["CERTNAME", "INSTANCE", "STATE"], &rows);
            for r in results.iter().filter(|r| r.error.is_some()) {
                eprintln!(
                    "error: {}: {}",
                    r.certname,
                    r.error.as_deref().unwrap_or("")
                );
            }
            if failed > 0 {
                eprintln!("{failed} of {} launches failed", results.len());
            }
            Ok(())
        }
    }
}
