//! A statement's result as text for a person: rows as an aligned table,
//! anything else as one line.

use gluesql_core::data::Value;
use gluesql_core::executor::{Payload, PayloadVariable};

/// `payload` as text, ending in a newline.
pub fn render(payload: &Payload) -> String {
    match payload {
        Payload::Select { labels, rows } => table(labels, rows.iter().map(|r| r.iter().map(cell).collect())),
        Payload::SelectMap(maps) => {
            let mut labels: Vec<String> = maps.iter().flat_map(|m| m.keys().cloned()).collect();
            labels.sort();
            labels.dedup();
            let rows = maps
                .iter()
                .map(|m| labels.iter().map(|l| m.get(l).map_or_else(String::new, cell)).collect());
            table(&labels, rows)
        }
        Payload::ShowColumns(cols) => {
            let labels = ["column".to_owned(), "type".to_owned()];
            table(&labels, cols.iter().map(|(n, t)| vec![n.clone(), t.to_string()]))
        }
        Payload::ShowVariable(PayloadVariable::Tables(names) | PayloadVariable::Functions(names)) => {
            names.iter().map(|n| format!("{n}\n")).collect()
        }
        Payload::ShowVariable(PayloadVariable::Version(v)) => format!("{v}\n"),
        Payload::Insert(n) => format!("INSERT {n}\n"),
        Payload::Delete(n) => format!("DELETE {n}\n"),
        Payload::Update(n) => format!("UPDATE {n}\n"),
        Payload::DropTable(n) => format!("DROP TABLE {n}\n"),
        Payload::Create => "CREATE\n".to_owned(),
        Payload::DropFunction => "DROP FUNCTION\n".to_owned(),
        Payload::AlterTable => "ALTER TABLE\n".to_owned(),
        Payload::CreateIndex => "CREATE INDEX\n".to_owned(),
        Payload::DropIndex => "DROP INDEX\n".to_owned(),
        Payload::StartTransaction => "BEGIN\n".to_owned(),
        Payload::Commit => "COMMIT\n".to_owned(),
        Payload::Rollback => "ROLLBACK\n".to_owned(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        v => String::from(v),
    }
}

/// `labels` over `rows`, each column as wide as its widest cell, and a
/// count of rows below.
fn table(labels: &[String], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = labels.iter().map(|l| l.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(labels);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in &rows {
        out.push_str(&line(row));
    }
    out.push_str(&format!(
        "({} row{})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned_under_their_labels() {
        let p = Payload::Select {
            labels: vec!["id".to_owned(), "name".to_owned()],
            rows: vec![
                vec![Value::I64(1), Value::Str("ada".to_owned())],
                vec![Value::I64(10), Value::Null],
            ],
        };
        let want = "| id | name |\n|----|------|\n| 1  | ada  |\n| 10 | NULL |\n(2 rows)\n";
        assert_eq!(render(&p), want);
        assert_eq!(render(&Payload::Insert(3)), "INSERT 3\n");
    }
}
