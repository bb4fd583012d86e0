//! `dhrt collection create|alter|show|list|drop`: collections and their settings.
//!
//! A collection exists from its first write with the cluster's defaults; `create`
//! gives it settings agreed by every node (a default consistency, a default time to
//! live, a quota of keys and bytes; see `dhrt_core::catalogue`). Each subcommand is one
//! call through [`dhrt::client::Client`]; `create`, `alter` and `drop` need an admin
//! token when the node requires tokens.

use super::data::Target;
use clap::{Args, Subcommand};
use dhrt_core::{
    catalogue::{CollectionSettings, Layout, SettingsChange},
    membership::parse_labels,
    proto::client::{CollectionView, Consistency},
    ring::Labels,
};

/// `dhrt collection ...`.
#[derive(Debug, Args)]
pub struct CollectionArgs {
    #[command(subcommand)]
    command: CollectionCommand,
}

/// The settings `create` and `alter` take besides the default consistency, which is
/// the command's `--consistency LEVEL` (`-c`). In `alter`, `default` returns a setting
/// to the cluster's default.
#[derive(Debug, Args, Default)]
struct SettingsArgs {
    /// Return the default consistency to the cluster's (quorum).
    #[arg(long)]
    reset_consistency: bool,
    /// The time to live, in seconds, of writes that give none.
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<Setting<u64>>,
    /// Most keys the collection may hold; writes of new keys past it are refused
    /// (quota_exceeded), deletes never.
    #[arg(long, value_name = "N")]
    max_keys: Option<Setting<u64>>,
    /// Most bytes of keys and values the collection may hold.
    #[arg(long, value_name = "BYTES")]
    max_bytes: Option<Setting<u64>>,
    /// Replicas of each key (the cluster's --replicas by default). A change moves the
    /// collection's data while it serves; `dhrt collection show` follows the move.
    #[arg(long, value_name = "N")]
    replicas: Option<Setting<u32>>,
    /// Keep the replicas on nodes carrying these labels only (as disk=ssd or
    /// zone=eu-1,disk=ssd; `any` for every node). A change moves the collection's data.
    #[arg(long, value_name = "LABEL=VALUE[,...]")]
    select: Option<Selector>,
    /// Spread each key's replicas over distinct values of this node label (as zone):
    /// distinct zones while there are enough, distinct nodes always; `none` for no
    /// zones. A change moves the collection's data.
    #[arg(long, value_name = "LABEL")]
    zone_label: Option<String>,
}

/// A selector on the command line: `key=value,...`, or `any`.
#[derive(Debug, Clone, PartialEq)]
struct Selector(Labels);

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "any" || s == "default" {
            return Ok(Selector(Labels::new()));
        }
        let labels = parse_labels(s.split(',').map(str::trim)).map_err(|e| e.to_string())?;
        Ok(Selector(labels))
    }
}

/// A setting's value on the command line, or `default`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting<T> {
    Value(T),
    Default,
}

impl<T: std::str::FromStr> std::str::FromStr for Setting<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "default" {
            return Ok(Setting::Default);
        }
        s.parse().map(Setting::Value).map_err(|e| format!("{e} (or `default`)"))
    }
}

impl<T: Copy> Setting<T> {
    fn change(setting: Option<Setting<T>>) -> Option<Option<T>> {
        setting.map(|s| match s {
            Setting::Value(v) => Some(v),
            Setting::Default => None,
        })
    }
}

impl SettingsArgs {
    /// The change these flags and the command's `--consistency` ask for.
    fn change(&self, level: Consistency) -> Result<SettingsChange, String> {
        let consistency = match (level, self.reset_consistency) {
            (Consistency::Default, false) => None,
            (Consistency::Default, true) => Some(None),
            (_, true) => return Err("give --consistency LEVEL or --reset-consistency".into()),
            (level, false) => Some(Some(level)),
        };
        let ttl_ms = match Setting::change(self.ttl) {
            Some(Some(secs)) => Some(Some(
                secs.checked_mul(1000).ok_or_else(|| format!("--ttl {secs} is too long"))?,
            )),
            other => other,
        };
        Ok(SettingsChange {
            consistency,
            ttl_ms,
            max_keys: Setting::change(self.max_keys),
            max_bytes: Setting::change(self.max_bytes),
            replicas: Setting::change(self.replicas),
            select: self.select.as_ref().map(|s| Some(s.0.clone()).filter(|l| !l.is_empty())),
            zone_label: self.zone_label.as_ref().map(|z| {
                Some(z.clone()).filter(|z| z.as_str() != "none" && z.as_str() != "default")
            }),
        })
    }
}

#[derive(Debug, Subcommand)]
enum CollectionCommand {
    /// Give a collection settings every node agrees on (`--consistency LEVEL` sets the
    /// level of requests that name none).
    ///
    /// Example: dhrt collection create sessions --ttl 3600 --consistency one --max-keys 1000000
    ///
    /// Example: dhrt collection create hot --replicas 2 --select disk=ssd --zone-label zone
    Create {
        /// The collection.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Change some settings of a collection (`default` returns one to the cluster's).
    ///
    /// Example: dhrt collection alter sessions --ttl 7200 --max-keys default
    ///
    /// Example: dhrt collection alter hot --replicas 5 --select any
    Alter {
        /// The collection.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Show a collection's settings and estimated size.
    Show {
        /// The collection.
        name: String,
    },
    /// List every collection with settings or keys.
    List,
    /// Delete every key of a collection and its settings (each delete at the command's
    /// --consistency).
    Drop {
        /// The collection.
        name: String,
    },
}

/// Runs `dhrt collection ...` against `--node`.
pub fn run(args: &CollectionArgs, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = target.connect().await?;
        match &args.command {
            CollectionCommand::Create { name, settings } => {
                let settings =
                    settings.change(target.consistency)?.apply(&CollectionSettings::default());
                print!("{}", describe(&client.collection_create(name, settings).await?));
            }
            CollectionCommand::Alter { name, settings } => {
                let change = settings.change(target.consistency)?;
                if change.is_empty() {
                    return Err("nothing to change: give --consistency, --reset-consistency, \
                                --ttl, --max-keys, --max-bytes, --replicas, --select or \
                                --zone-label"
                        .into());
                }
                print!("{}", describe(&client.collection_alter(name, change).await?));
            }
            CollectionCommand::Show { name } => {
                print!("{}", describe(&client.collection_show(name).await?));
            }
            CollectionCommand::List => {
                let all = client.collection_list().await?;
                if all.is_empty() {
                    eprintln!("no collections yet (a first write creates one)");
                }
                for v in &all {
                    println!("{}", row(v));
                }
            }
            CollectionCommand::Drop { name } => {
                let deleted = client.collection_drop(name, target.consistency).await?;
                eprintln!("dropped {name}: {deleted} keys deleted, its settings removed");
            }
        }
        Ok(())
    })
}

/// A collection's settings as text, `default` where it has none: consistency, TTL,
/// max keys, max bytes.
fn settings_text(s: &CollectionSettings) -> [String; 4] {
    fn or_default<T>(v: Option<T>, show: impl Fn(T) -> String) -> String {
        v.map_or_else(|| "default".to_string(), show)
    }
    [
        or_default(s.consistency, |c| c.to_string()),
        or_default(s.ttl_ms, |t| format!("{} s", t as f64 / 1000.0)),
        or_default(s.max_keys, |n| n.to_string()),
        or_default(s.max_bytes, |n| n.to_string()),
    ]
}

/// What `show`, `create` and `alter` print: one `name: value` line a field.
fn describe(v: &CollectionView) -> String {
    let [consistency, ttl, max_keys, max_bytes] = settings_text(&v.settings);
    let (replicas, select, moving) = layout_text(v);
    let zones = v.layout.current.zone_label.as_deref().unwrap_or("none");
    format!(
        "collection:  {}\ndefined:     {}\nplacement:   {}\nreplicas:    {replicas}\n\
         select:      {select}\nzones:       {zones}\nmoving:      {moving}\n\
         consistency: {consistency}\n\
         ttl:         {ttl}\nmax keys:    {max_keys}\nmax bytes:   {max_bytes}\n\
         keys:        {} (estimated)\nbytes:       {} (estimated)\n",
        v.name,
        if v.defined { "yes" } else { "no (the cluster's defaults)" },
        v.placement,
        v.keys,
        v.bytes,
    )
}

/// The replicas and selector in use (with what the settings ask for, when it differs
/// and no move is under way yet), and the move under way: `no`, or its phase and
/// target.
fn layout_text(v: &CollectionView) -> (String, String, String) {
    let asked = v.settings.layout();
    let current = &v.layout.current;
    let moving = v.layout.moving.as_ref();
    let pending = moving.is_none() && asked != *current;
    let mut replicas = v.replicas.to_string();
    if pending && asked.replicas != current.replicas {
        let n = asked.replicas.map_or("default".into(), |n| n.to_string());
        replicas.push_str(&format!(" (asked: {n}, move not started yet)"));
    }
    let mut select = current.select_text();
    if pending && (asked.select != current.select || asked.zone_label != current.zone_label) {
        select.push_str(&format!(" (asked: {}, move not started yet)", asked.select_text()));
    }
    let moving = match moving {
        None => "no".to_string(),
        Some(m) => format!(
            "{} → {} on {}{} (phase {} of 3: {})",
            current_text(current),
            current_text(&m.to),
            m.to.select_text(),
            m.to.zone_label.as_ref().map_or(String::new(), |z| format!(", zones by {z}")),
            m.phase.number(),
            m.phase.as_str()
        ),
    };
    (replicas, select, moving)
}

/// A layout's replicas as text.
fn current_text(l: &Layout) -> String {
    match l.replicas {
        None => "the cluster's replicas".to_string(),
        Some(1) => "1 replica".to_string(),
        Some(n) => format!("{n} replicas"),
    }
}

/// One line of `list`: name, placement, replicas, settings, size.
fn row(v: &CollectionView) -> String {
    let [consistency, ttl, max_keys, max_bytes] = settings_text(&v.settings);
    let moving = v.layout.moving.as_ref().map_or("no", |m| m.phase.as_str());
    format!(
        "{}\t{}\tN={}\tselect={}\tmoving={moving}\tconsistency={consistency}\tttl={}\t\
         max_keys={max_keys}\tmax_bytes={max_bytes}\tkeys={}\tbytes={}",
        v.name,
        v.placement,
        v.replicas,
        v.layout.current.select_text(),
        ttl.replace(' ', ""),
        v.keys,
        v.bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_values_or_default() {
        assert_eq!("5".parse::<Setting<u64>>(), Ok(Setting::Value(5)));
        assert_eq!("default".parse::<Setting<u64>>(), Ok(Setting::Default));
        assert!("five".parse::<Setting<u64>>().unwrap_err().contains("or `default`"));
        let args = SettingsArgs {
            ttl: Some(Setting::Value(2)),
            max_keys: Some(Setting::Default),
            ..Default::default()
        };
        let change = args.change(Consistency::Default).unwrap();
        assert_eq!(change.ttl_ms, Some(Some(2000)));
        assert_eq!(change.max_keys, Some(None));
        assert_eq!(change.consistency, None);
        let one = args.change(Consistency::One).unwrap();
        assert_eq!(one.consistency, Some(Some(Consistency::One)));
        let reset = SettingsArgs { reset_consistency: true, ..Default::default() };
        assert_eq!(reset.change(Consistency::Default).unwrap().consistency, Some(None));
        assert!(reset.change(Consistency::All).is_err());
        let layout = SettingsArgs {
            replicas: Some(Setting::Value(5)),
            select: Some("disk=ssd, zone=a".parse().unwrap()),
            ..Default::default()
        };
        let change = layout.change(Consistency::Default).unwrap();
        assert_eq!(change.replicas, Some(Some(5)));
        assert_eq!(change.select.unwrap().unwrap().len(), 2);
        let any = SettingsArgs { select: Some("any".parse().unwrap()), ..Default::default() };
        assert_eq!(any.change(Consistency::Default).unwrap().select, Some(None));
        assert!("disk".parse::<Selector>().unwrap_err().contains("key=value"));
    }
}
