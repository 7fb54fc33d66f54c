//! `rollout list`: every rollout in a state store, one line each: the fleet at a glance.

use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use rollout::plan::show_number;
use rollout::state::{Holding, Journal, StateStore, StoreError};

use super::Exit;
use super::args::{ListArgs, OutputFormat};

#[derive(Serialize)]
struct Row {
    name: String,
    /// The journal's status (`interrupted` when no live process drives an active rollout), or
    /// `damaged` when the journal cannot be read.
    status: String,
    stage: Option<usize>,
    stages: Option<usize>,
    /// Percent on the new version, when known.
    weight: Option<f64>,
    holder: Option<Holding>,
    /// When the journal last changed (RFC 3339).
    updated_at: Option<String>,
}

pub fn list(args: &ListArgs) -> anyhow::Result<Exit> {
    super::runtime()?.block_on(async {
        let store = match super::state::open(&args.state, None) {
            Ok(store) => store,
            Err(exit) => return Ok(exit),
        };
        let names = match store.names().await {
            Ok(names) => names,
            Err(e) => return Ok(super::state::failed(&e)),
        };
        let mut rows = Vec::with_capacity(names.len());
        for name in names {
            match row(store.as_ref(), name).await {
                Ok(row) => rows.push(row),
                Err(e) => return Ok(super::state::failed(&e)),
            }
        }
        match args.output {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            OutputFormat::Human if rows.is_empty() => {
                eprintln!("no rollouts in {}", store.location())
            }
            OutputFormat::Human => print!("{}", table(&rows)),
        }
        Ok(Exit::Success)
    })
}

async fn row(store: &dyn StateStore, name: String) -> Result<Row, StoreError> {
    let holder = store.holding(&name).await?;
    let journal = match store.journal(&name).await {
        Ok(journal) => journal,
        Err(StoreError::Damaged { .. }) => None,
        Err(e) => return Err(e),
    };
    let Some(journal) = journal else {
        return Ok(Row {
            name,
            status: "damaged".to_string(),
            stage: None,
            stages: None,
            weight: None,
            holder,
            updated_at: None,
        });
    };
    let live = holder.as_ref().is_some_and(|h| h.live);
    Ok(Row {
        status: status_word(&journal, live),
        stage: Some(journal.stage),
        stages: Some(journal.stages),
        weight: journal.weight.filter(|_| journal.pending.is_none()),
        holder,
        updated_at: Some(journal.updated_at.clone()),
        name,
    })
}

fn status_word(journal: &Journal, live: bool) -> String {
    if journal.status.is_active() && !live {
        "interrupted".to_string()
    } else {
        journal.status.as_str().to_string()
    }
}

fn table(rows: &[Row]) -> String {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header([
        "Rollout",
        "Status",
        "Stage",
        "Weight",
        "Holder",
        "Last change",
    ]);
    for row in rows {
        let stage = match (row.stage, row.stages) {
            (Some(stage), Some(stages)) => format!("{stage} of {stages}"),
            _ => "-".to_string(),
        };
        let weight = row
            .weight
            .map_or("unknown".to_string(), |w| format!("{}%", show_number(w)));
        let holder = match &row.holder {
            Some(h) if h.live => h.holder.describe(),
            _ => "-".to_string(),
        };
        table.add_row(vec![
            row.name.clone(),
            row.status.clone(),
            stage,
            weight,
            holder,
            row.updated_at.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    format!("{table}\n")
}
