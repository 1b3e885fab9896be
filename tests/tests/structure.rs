//! The tree keeps the shape `docs/architecture.md` promises, checked from the source itself:
//! imports in the gateway only run down its layers, no two modules of the gateway or the
//! worker import each other (directly or round a loop; a child using its parent's items is
//! not a loop), and no file's non-test code outgrows
//! what one reader can hold. The source is parsed with `syn`, so grouped `use` trees and paths
//! written inline (`crate::payments::service::create(..)`) count as much as plain `use` lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The gateway's floors, lowest first. A module may import its own floor and those below.
const GATEWAY_LAYERS: &[&str] = &[
    "core",
    "providers",
    "ledger",
    "merchants",
    "webhooks",
    "usage",
    "payouts",
    "payments",
    "reconciliation",
    "http",
    "settings",
    "app",
];

/// Non-test lines a source file may hold before it should be split by concern.
const MAX_FILE_LINES: usize = 600;

type ModPath = Vec<String>;

struct Module {
    file: PathBuf,
    source: String,
    syntax: syn::File,
}

/// Every module file of a library crate, keyed by its module path (`[]` is `lib.rs`).
fn modules_of(crate_dir: &str) -> BTreeMap<ModPath, Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let mut modules = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let mut segments: ModPath = relative
                .iter()
                .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            match segments.last().map(String::as_str) {
                Some("main") if segments.len() == 1 => continue, // the binary, not the library
                Some("lib") if segments.len() == 1 => segments.clear(),
                Some("mod") => {
                    segments.pop();
                }
                _ => {}
            }
            let source = std::fs::read_to_string(&path).expect("read a source file");
            let syntax = syn::parse_file(&source)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            modules.insert(
                segments,
                Module {
                    file: path,
                    source,
                    syntax,
                },
            );
        }
    }
    assert!(
        modules.len() > 5,
        "found too few modules under {}",
        src.display()
    );
    modules
}

/// Collects the absolute module paths a file names through `crate::`, `super::` and `self::`,
/// skipping `#[cfg(test)]` items: tests may reach wherever they need to.
struct References<'m> {
    modules: &'m BTreeMap<ModPath, Module>,
    /// The module the visitor is in (the file's path plus any inline `mod x { .. }`).
    here: ModPath,
    /// Names a `use` brought in, with the absolute path each stands for, so that
    /// `use crate::payments; payments::service::create(..)` is seen to reach the service.
    aliases: BTreeMap<String, ModPath>,
    found: BTreeSet<ModPath>,
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .map(|m| m.path().is_ident("test"))
                .unwrap_or(false)
    })
}

impl References<'_> {
    fn resolve(&self, segments: &[String]) -> Option<ModPath> {
        let (first, rest) = segments.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.here.clone(),
            "super" => {
                let mut b = self.here.clone();
                b.pop();
                let mut rest = rest;
                while rest.first().map(String::as_str) == Some("super") {
                    b.pop();
                    rest = &rest[1..];
                }
                b.extend(rest.iter().cloned());
                return Some(b);
            }
            // A path may start at a child module (`stripe::start(..)`) or at a name a `use`
            // brought in; any other first segment is an external crate, a local or a type.
            child
                if self
                    .modules
                    .contains_key(&[self.here.as_slice(), &[child.to_string()]].concat()) =>
            {
                let mut b = self.here.clone();
                b.extend(segments.iter().cloned());
                return Some(b);
            }
            alias => self.aliases.get(alias)?.clone(),
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                self.record_with(prefix, n.ident.to_string(), n.ident.to_string())
            }
            syn::UseTree::Rename(r) => {
                self.record_with(prefix, r.ident.to_string(), r.rename.to_string())
            }
            syn::UseTree::Glob(_) => {
                if let Some(path) = self.resolve(prefix) {
                    self.found.insert(path);
                }
            }
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    fn record_with(&mut self, prefix: &[String], last: String, alias: String) {
        let mut full = prefix.to_vec();
        if last != "self" {
            full.push(last);
        }
        if let Some(path) = self.resolve(&full) {
            let alias = if alias == "self" {
                full.last().cloned().unwrap_or(alias)
            } else {
                alias
            };
            self.aliases.insert(alias, path.clone());
            self.found.insert(path);
        }
    }
}

impl<'ast> Visit<'ast> for References<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if module.content.is_some() {
            self.here.push(module.ident.to_string());
            syn::visit::visit_item_mod(self, module);
            self.here.pop();
        }
    }

    /// `pub(super)` and `pub(crate)` say who may look, not what is imported.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(resolved) = self.resolve(&segments) {
            self.found.insert(resolved);
        }
        syn::visit::visit_path(self, path);
    }
}

/// The module files each module file imports from: a reference resolves to the longest module
/// path that is a file.
fn import_graph(modules: &BTreeMap<ModPath, Module>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut graph = BTreeMap::new();
    for (path, module) in modules {
        let mut refs = References {
            modules,
            aliases: BTreeMap::new(),
            here: path.clone(),
            found: BTreeSet::new(),
        };
        refs.visit_file(&module.syntax);
        let mut targets = BTreeSet::new();
        for reference in refs.found {
            let target = (0..=reference.len())
                .rev()
                .map(|n| reference[..n].to_vec())
                .find(|prefix| modules.contains_key(prefix))
                .unwrap_or_default();
            // A child may use what its parent module keeps for its children: Rust's privacy is
            // built for that (`super::`), and the parent composing its children is no loop.
            // Naming the crate root (declarations and re-exports only) is no import either.
            let is_ancestor = target.len() < path.len() && path.starts_with(&target);
            if target != *path && !is_ancestor {
                targets.insert(target);
            }
        }
        graph.insert(path.clone(), targets);
    }
    graph
}

fn name(path: &ModPath) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

/// Strongly connected groups of more than one module: each is a loop of imports.
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm; recursion is fine at a few hundred files.
    struct Tarjan<'g> {
        graph: &'g BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        on_stack: BTreeSet<&'g ModPath>,
        groups: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, node: &'g ModPath) {
            let i = self.index.len();
            self.index.insert(node, i);
            self.low.insert(node, i);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.graph.contains_key(next) {
                    continue;
                }
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut group = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    group.push(name(member));
                    if member == node {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.groups.push(group);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan.groups
}

fn layer_of(path: &ModPath) -> Option<usize> {
    let top = path.first()?;
    Some(
        GATEWAY_LAYERS
            .iter()
            .position(|l| l == top)
            .unwrap_or_else(|| panic!("gateway module `{top}` has no floor in GATEWAY_LAYERS")),
    )
}

fn oversized(modules: &BTreeMap<ModPath, Module>) -> Vec<String> {
    modules
        .values()
        .filter_map(|m| {
            let lines = m
                .source
                .lines()
                .take_while(|l| l.trim() != "#[cfg(test)]")
                .count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", m.file.display()))
        })
        .collect()
}

#[test]
fn gateway_imports_only_run_down_its_floors() {
    let modules = modules_of("gateway");
    let graph = import_graph(&modules);
    let mut upward = Vec::new();
    for (from, targets) in &graph {
        let Some(own) = layer_of(from) else { continue };
        for to in targets {
            if layer_of(to).is_some_and(|theirs| theirs > own) {
                upward.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    assert!(upward.is_empty(), "imports that climb: {upward:#?}");
    // The checker must see imports at all, or an empty answer proves nothing.
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        edges > 100,
        "only {edges} imports found: the parser lost them"
    );
    assert!(
        graph[&vec![
            "http".to_string(),
            "api".to_string(),
            "payments".to_string()
        ]]
            .contains(&vec!["payments".to_string(), "service".to_string()]),
        "the payments API is expected to call the payments service"
    );
}

#[test]
fn no_two_modules_import_each_other() {
    for krate in ["gateway", "worker"] {
        let graph = import_graph(&modules_of(krate));
        let loops = cycles(&graph);
        assert!(loops.is_empty(), "{krate} has import loops: {loops:#?}");
    }
}

#[test]
fn the_loop_finder_finds_loops() {
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let c = vec!["c".to_string()];
    let graph = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([c.clone()])),
        (c.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
    let line = BTreeMap::from([(a, BTreeSet::from([b.clone()])), (b, BTreeSet::new())]);
    assert!(cycles(&line).is_empty());
}

#[test]
fn no_source_file_outgrows_one_reader() {
    for krate in ["gateway", "worker", "runtime", "entity"] {
        let big = oversized(&modules_of(krate));
        assert!(
            big.is_empty(),
            "{krate}: split these by concern (over {MAX_FILE_LINES} non-test lines): {big:#?}"
        );
    }
}

#[test]
fn the_http_adapters_query_nothing_themselves() {
    // The API, the dashboard and the checkout call the services; a query written in a handler
    // is a rule of its own that the other adapter does not share.
    let modules = modules_of("gateway");
    let direct: Vec<String> = modules
        .iter()
        .filter(|(path, _)| path.first().map(String::as_str) == Some("http"))
        .flat_map(|(_, m)| {
            let code = m.source.split("#[cfg(test)]").next().unwrap_or_default();
            code.lines()
                .enumerate()
                .filter(|(_, line)| {
                    [
                        "Entity::find",
                        "Entity::insert",
                        "Entity::update",
                        "Entity::delete",
                    ]
                    .iter()
                    .any(|call| line.contains(call))
                })
                .map(|(n, line)| format!("{}:{}: {}", m.file.display(), n + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(direct.is_empty(), "queries in HTTP adapters: {direct:#?}");
}

#[test]
fn both_binaries_link_their_hot_code_together() {
    // docs/benchmarks.md, "Hot code together": a third of the gateway's and worker's resident
    // memory rides on this wiring, and nothing else would notice it gone.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let list = std::fs::read_to_string(root.join("bench/hot-symbols.txt")).expect("the list");
    for krate in ["gateway", "worker"] {
        let manifest =
            std::fs::read_to_string(root.join(krate).join("Cargo.toml")).expect("manifest");
        assert!(
            manifest.contains("build = \"../bench/hot_code_link.rs\""),
            "{krate} is linked without its hot-code list"
        );
        // Legacy-mangled paths start with the crate's name and its length.
        let own = format!("_ZN{}{krate}", krate.len());
        let listed = list.lines().filter(|name| name.starts_with(&own)).count();
        assert!(
            listed >= 20,
            "bench/hot-symbols.txt holds {listed} of {krate}'s own functions: regenerate it"
        );
    }
    let script = std::fs::read_to_string(root.join("bench/hot_code_link.rs")).expect("script");
    assert!(script.contains("--symbol-ordering-file"));
}
