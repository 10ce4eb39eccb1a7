//! `perfmon top`: the live view (ratatui on crossterm), refreshed every 2 seconds.

use std::time::{Duration, Instant};

use perfmon_runtime::{Scope, Window};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use serde_json::Value;

use crate::source::Source;
use crate::text;

const REFRESH: Duration = Duration::from_secs(2);

struct State {
    window: Window,
    scope: Scope,
    /// `/` typed: the filter is being edited.
    editing: bool,
    filter: String,
    /// The routes column sorted by (1 = requests, default).
    sort: usize,
    table: TableState,
    answer: Option<Value>,
    error: Option<String>,
    /// Enter on a route: its latency distribution (its own fetch).
    detail: Option<(String, Result<Value, String>)>,
    /// A key fetched afresh: the next timed refresh waits a whole period.
    refreshed: bool,
}

impl State {
    fn routes(&self) -> Vec<Value> {
        let mut routes = self
            .answer
            .as_ref()
            .map(|a| text::routes(&a["data"]))
            .unwrap_or_default();
        let f = self.filter.to_lowercase();
        routes.retain(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.to_lowercase().contains(&f))
        });
        if self.sort == 0 {
            routes.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        } else {
            routes.sort_by(|a, b| {
                text::sort_key(b, self.sort).total_cmp(&text::sort_key(a, self.sort))
            });
        }
        routes
    }

    fn refresh(&mut self, source: &Source) {
        self.refreshed = true;
        match source.fetch(self.window, self.scope, None) {
            Ok(a) => {
                self.answer = Some(a);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
        if let Some((path, _)) = &self.detail {
            let path = path.clone();
            let fetched = source.fetch(self.window, self.scope, Some(&path));
            self.detail = Some((path, fetched));
        }
    }
}

/// Runs the view until `q` or Ctrl-C.
pub(crate) fn run(source: &Source, window: Window, scope: Scope) -> Result<(), String> {
    let mut state = State {
        window,
        scope,
        editing: false,
        filter: String::new(),
        sort: 1,
        table: TableState::default().with_selected(Some(0)),
        answer: None,
        error: None,
        detail: None,
        refreshed: false,
    };
    state.refresh(source);
    let mut terminal = ratatui::try_init().map_err(|e| format!("no terminal to draw on: {e}"))?;
    let mut last = Instant::now();
    let result = loop {
        if let Err(e) = terminal.draw(|f| draw(f, &mut state)) {
            break Err(e.to_string());
        }
        let timeout = REFRESH.saturating_sub(last.elapsed());
        match event::poll(timeout) {
            Ok(true) => {
                if let Ok(Event::Key(k)) = event::read() {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    // raw mode: Ctrl-C arrives as a key
                    let ctrl_c = k.code == KeyCode::Char('c')
                        && k.modifiers.contains(event::KeyModifiers::CONTROL);
                    if ctrl_c || handle(k.code, &mut state, source) {
                        break Ok(());
                    }
                    if state.refreshed {
                        state.refreshed = false;
                        last = Instant::now();
                    }
                }
            }
            Ok(false) => {
                state.refresh(source);
                last = Instant::now();
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    ratatui::restore();
    result
}

/// One key; true to quit.
fn handle(key: KeyCode, s: &mut State, source: &Source) -> bool {
    if s.editing {
        match key {
            KeyCode::Enter | KeyCode::Esc => s.editing = false,
            KeyCode::Backspace => {
                s.filter.pop();
            }
            KeyCode::Char(c) => s.filter.push(c),
            _ => {}
        }
        s.table.select(Some(0));
        return false;
    }
    let step = |w: Window, by: isize| {
        let i = Window::ALL.iter().position(|x| *x == w).unwrap_or(0) as isize;
        Window::ALL[(i + by).rem_euclid(Window::ALL.len() as isize) as usize]
    };
    match key {
        KeyCode::Char('q') => return true,
        KeyCode::Esc => s.detail = None,
        KeyCode::Char('/') => s.editing = true,
        KeyCode::Char('w') => {
            s.window = step(s.window, 1);
            s.refresh(source);
        }
        KeyCode::Char('W') => {
            s.window = step(s.window, -1);
            s.refresh(source);
        }
        KeyCode::Char('s') => {
            s.scope = match s.scope {
                Scope::Instance => Scope::Cluster,
                Scope::Cluster => Scope::Instance,
            };
            s.refresh(source);
        }
        KeyCode::Char(c @ '1'..='7') => s.sort = c as usize - '1' as usize,
        KeyCode::Down | KeyCode::Char('j') => s.table.select_next(),
        KeyCode::Up | KeyCode::Char('k') => s.table.select_previous(),
        KeyCode::Enter => {
            let routes = s.routes();
            if let Some(r) = s.table.selected().and_then(|i| routes.get(i)) {
                let path = r["path"].as_str().unwrap_or_default().to_string();
                let fetched = source.fetch(s.window, s.scope, Some(&path));
                s.detail = Some((path, fetched));
            }
        }
        _ => {}
    }
    false
}

fn draw(f: &mut Frame, s: &mut State) {
    let [head, body, bottom, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(6),
        Constraint::Length(12),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let header = match (&s.answer, &s.error) {
        (_, Some(e)) => format!("perfmon — {e}"),
        (Some(a), None) => text::header(a),
        (None, None) => "perfmon — loading".into(),
    };
    let filter = if s.editing || !s.filter.is_empty() {
        format!("filter: /{}{}", s.filter, if s.editing { "▏" } else { "" })
    } else {
        String::new()
    };
    f.render_widget(
        Paragraph::new(vec![Line::from(header), Line::from(filter)]),
        head,
    );

    if let Some((path, fetched)) = &s.detail {
        let lines: Vec<Line> = match fetched {
            Ok(a) => {
                let d = &a["data"];
                let r = text::routes(d).into_iter().next().unwrap_or(Value::Null);
                let c = text::route_cells(&r);
                let mut l = vec![Line::from(format!(
                    "requests {}  p50 {} ms  p95 {} ms  p99 {} ms  errors {}%  apdex {} (T {} ms)",
                    c[1],
                    c[2],
                    c[3],
                    c[4],
                    c[5],
                    c[6],
                    text::ms(&r["apdexThreshold"])
                ))];
                l.push(Line::from(""));
                let width = usize::from(body.width).saturating_sub(45).max(10);
                l.extend(
                    text::distribution_lines(d, width)
                        .into_iter()
                        .map(Line::from),
                );
                l
            }
            Err(e) => vec![Line::from(e.clone())],
        };
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" latency distribution of {path} (Esc: back) ")),
            ),
            body,
        );
    } else {
        let routes = s.routes();
        let header = Row::new(text::ROUTE_COLUMNS.iter().enumerate().map(|(i, c)| {
            let mark = if i == s.sort { "▼" } else { "" };
            Cell::from(format!("{c}{mark}"))
        }))
        .style(Style::default().add_modifier(Modifier::BOLD));
        let rows = routes.iter().map(|r| Row::new(text::route_cells(r)));
        let table = Table::new(
            rows,
            [
                Constraint::Min(30),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(6),
            ],
        )
        .header(header)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .block(Block::default().borders(Borders::ALL).title(" routes "));
        f.render_stateful_widget(table, body, &mut s.table);
    }

    let d = s
        .answer
        .as_ref()
        .map(|a| &a["data"])
        .unwrap_or(&Value::Null);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    let mut slow = text::slow_lines(d);
    if slow.is_empty() {
        slow.push("(none)".into());
    }
    f.render_widget(
        Paragraph::new(slow.into_iter().map(Line::from).collect::<Vec<_>>()).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" slow requests "),
        ),
        left,
    );
    let mut rest = text::database_lines(d);
    rest.extend(text::cache_and_batch_lines(d));
    let alerts = text::alert_lines(d);
    if !alerts.is_empty() {
        rest.push("firing alerts:".into());
        rest.extend(alerts);
    }
    f.render_widget(
        Paragraph::new(rest.into_iter().map(Line::from).collect::<Vec<_>>()).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" database · cache · batches · alerts "),
        ),
        right,
    );
    f.render_widget(
        Paragraph::new(
            "q quit  w/W window  s scope  / filter  1-7 sort  ↑↓ select  Enter distribution  Esc back",
        ),
        keys,
    );
}
