fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let a = sofa_trace::Archive::open(std::path::Path::new(&dir)).unwrap();
    let start = a.meta().clock.start_ns;
    for l in a.read_table::<sofa_trace::tables::LostEvents>().unwrap() {
        println!(
            "{:.3}s cpu {:?} {} {}",
            (l.time_ns.saturating_sub(start)) as f64 / 1e9,
            l.cpu,
            l.collector,
            l.count
        );
    }
}
