using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ProxySelection.Bench;

/// <summary>The table with ratios, and the JSON object (ratios beside the raw figures) for scripts and the results file.</summary>
public static class BenchReport
{
    /// <summary>Ratio keys always present in the JSON (null when a side was not measured).</summary>
    public static readonly IReadOnlyList<string> RatioKeys =
    [
        "holding_vs_haproxy_throughput",
        "holding_vs_direct_throughput",
        "passthrough_vs_direct_throughput",
        "holding_vs_haproxy_cpu_per_gb",
        "conn_rate_vs_haproxy",
        "holding_vs_socat_throughput",
        "holding_vs_socat_cpu_per_gb",
        "holding_mptcp_vs_haproxy_mptcp_throughput",
        "holding_mptcp_vs_socat_mptcp_throughput",
        "holding_mptcp_vs_direct_throughput",
        "holding_mptcp_vs_direct_throughput_1g",
        "conn_rate_mptcp_vs_haproxy_mptcp",
        "aggregation_two_paths_vs_one",
        "engine_holding_vs_haproxy_mptcp_throughput",
        "engine_holding_vs_direct_throughput_1g",
        "engine_holding_vs_haproxy_mptcp_cpu_per_gb",
        "conn_rate_engine_holding_vs_haproxy_mptcp",
        "conn_rate_passthrough_vs_direct",
        "passthrough_mptcp_vs_direct_mptcp_throughput",
        "conn_rate_passthrough_mptcp_vs_direct_mptcp",
        "syn_added_p99_us_passthrough",
        "syn_added_p99_us_passthrough_mptcp",
        "syn_added_p99_us_engine_holding",
        "engine_syn_immediate_p99_us",
        "engine_syn_held_p99_us",
        "splice_vs_copy_cpu_per_gb",
        "splice_vs_socat_cpu_per_gb",
        "splice_vs_copy_conn_rate",
        "engine_holding_vs_socat_mptcp_cpu_per_gb",
        "engine_holding_vs_haproxy_mptcp_cpu_per_connection",
        "engine_start_to_ready_ms",
        "engine_idle_rss_kib",
    ];

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <param name="results">The run.</param>
    /// <param name="evidence">Include the long texts (ss -tinM, strace -c); the results file has them, the JSON line not.</param>
    public static JsonObject ToJson(BenchResults results, bool evidence = false)
    {
        ArgumentNullException.ThrowIfNull(results);
        double? Tput(string name, bool limited = false) => results.Find(name) is { } r ? SubjectResult.Median(limited ? r.ThroughputBps1G : r.ThroughputBps) : null;
        double? Cpu(string name) => results.Find(name) is { } r ? SubjectResult.Median(r.CpuSecondsPerGb) : null;
        double? Conn(string name) => results.Find(name) is { } r ? SubjectResult.Median(r.ConnectionsPerSecond) : null;
        double? CpuPerConnection(string name) => results.Find(name) is { } r ? SubjectResult.Median(r.CpuMicrosPerConnection) : null;
        double? ConnectP99(string name) => results.Find(name) is { } r ? SubjectResult.Median(r.ConnectP99Us) : null;
        var engine = results.EngineSynLatency;
        // "holding" is our relay TCP → TCP; "passthrough" needs the engine (null until it is a subject).
        var ratios = new Dictionary<string, double?>
        {
            ["holding_vs_haproxy_throughput"] = Ratio(Tput("relay-tcp"), Tput("haproxy")),
            ["holding_vs_direct_throughput"] = Ratio(Tput("relay-tcp"), Tput("direct")),
            ["passthrough_vs_direct_throughput"] = Ratio(Tput("proxy-passthrough"), Tput("direct")),
            ["holding_vs_haproxy_cpu_per_gb"] = Ratio(Cpu("relay-tcp"), Cpu("haproxy")),
            ["conn_rate_vs_haproxy"] = Ratio(Conn("relay-tcp"), Conn("haproxy")),
            ["holding_vs_socat_throughput"] = Ratio(Tput("relay-tcp"), Tput("socat")),
            ["holding_vs_socat_cpu_per_gb"] = Ratio(Cpu("relay-tcp"), Cpu("socat")),
            ["holding_mptcp_vs_haproxy_mptcp_throughput"] = Ratio(Tput("relay-mptcp"), Tput("haproxy-mptcp")),
            ["holding_mptcp_vs_socat_mptcp_throughput"] = Ratio(Tput("relay-mptcp"), Tput("socat-mptcp")),
            ["holding_mptcp_vs_direct_throughput"] = Ratio(Tput("relay-mptcp"), Tput("direct")),
            ["holding_mptcp_vs_direct_throughput_1g"] = Ratio(Tput("relay-mptcp", limited: true), Tput("direct", limited: true)),
            ["conn_rate_mptcp_vs_haproxy_mptcp"] = Ratio(Conn("relay-mptcp"), Conn("haproxy-mptcp")),
            ["aggregation_two_paths_vs_one"] = results.AggregationTwoPathsVsOne,
            ["engine_holding_vs_haproxy_mptcp_throughput"] = Ratio(Tput("proxy-holding"), Tput("haproxy-mptcp")),
            ["engine_holding_vs_direct_throughput_1g"] = Ratio(Tput("proxy-holding", limited: true), Tput("direct", limited: true)),
            ["engine_holding_vs_haproxy_mptcp_cpu_per_gb"] = Ratio(Cpu("proxy-holding"), Cpu("haproxy-mptcp")),
            ["conn_rate_engine_holding_vs_haproxy_mptcp"] = Ratio(Conn("proxy-holding"), Conn("haproxy-mptcp")),
            ["conn_rate_passthrough_vs_direct"] = Ratio(Conn("proxy-passthrough"), Conn("direct")),
            // MPTCP end to end through the engine: every SYN queued and passed (cache hits after the first).
            ["passthrough_mptcp_vs_direct_mptcp_throughput"] = Ratio(Tput("proxy-passthrough-mptcp"), Tput("direct-mptcp")),
            ["conn_rate_passthrough_mptcp_vs_direct_mptcp"] = Ratio(Conn("proxy-passthrough-mptcp"), Conn("direct-mptcp")),
            // Not ratios: µs the engine adds to the client's connect at p99 (same run), and the engine's own figures.
            ["syn_added_p99_us_passthrough"] = Difference(ConnectP99("proxy-passthrough"), ConnectP99("direct")),
            ["syn_added_p99_us_passthrough_mptcp"] = Difference(ConnectP99("proxy-passthrough-mptcp"), ConnectP99("direct-mptcp")),
            ["syn_added_p99_us_engine_holding"] = Difference(ConnectP99("proxy-holding"), ConnectP99("direct-mptcp") ?? ConnectP99("direct")),
            ["engine_syn_immediate_p99_us"] = engine is { ImmediateCount: > 0 } ? engine.ImmediateP99Us : null,
            ["engine_syn_held_p99_us"] = engine is { HeldCount: > 0 } ? engine.HeldP99Us : null,
            ["splice_vs_copy_cpu_per_gb"] = Ratio(Cpu("relay-tcp-splice"), Cpu("relay-tcp")),
            ["splice_vs_socat_cpu_per_gb"] = Ratio(Cpu("relay-tcp-splice"), Cpu("socat")),
            ["splice_vs_copy_conn_rate"] = Ratio(Conn("relay-tcp-splice"), Conn("relay-tcp")),
            ["engine_holding_vs_socat_mptcp_cpu_per_gb"] = Ratio(Cpu("proxy-holding"), Cpu("socat-mptcp")),
            ["engine_holding_vs_haproxy_mptcp_cpu_per_connection"] = Ratio(CpuPerConnection("proxy-holding"), CpuPerConnection("haproxy-mptcp")),
            // Not ratios: the engine daemon's start to READY and its idle memory (issue 13, warm start).
            ["engine_start_to_ready_ms"] = results.EngineStartToReadyMs,
            ["engine_idle_rss_kib"] = results.EngineIdleRssKiB,
        };
        var json = new JsonObject();
        foreach (var key in RatioKeys)
        {
            json[key] = Round(ratios[key], 3);
        }
        var goals = new JsonObject();
        foreach (var g in Goals(ratios, results))
        {
            goals[g.Key] = new JsonObject { ["goal"] = g.Text, ["value"] = Round(g.Value, 3), ["met"] = g.Met };
        }
        json["goals"] = goals;
        var goals13 = new JsonObject();
        foreach (var g in Issue13Goals(ratios))
        {
            goals13[g.Key] = new JsonObject { ["goal"] = g.Text, ["value"] = Round(g.Value, 3), ["met"] = g.Met };
        }
        json["goals_issue13"] = goals13;
        json["machine"] = new JsonObject
        {
            ["cpu_model"] = results.Machine.CpuModel,
            ["cores"] = results.Machine.Cores,
            ["kernel"] = results.Machine.Kernel,
            ["dotnet"] = results.Machine.DotNet,
            ["load_average_at_start"] = results.Machine.LoadAverageAtStart,
            ["haproxy"] = results.Machine.HaproxyVersion,
            ["socat"] = results.Machine.SocatVersion,
        };
        json["settings"] = new JsonObject
        {
            ["started_utc"] = results.Started.ToString("O", CultureInfo.InvariantCulture),
            ["rounds"] = results.Options.Rounds,
            ["iperf3_seconds"] = results.Options.Seconds,
            ["wrk_seconds"] = results.Options.ConnectionSeconds,
            ["idle_connections"] = results.Options.IdleConnections,
            ["rate_limited_1g"] = results.Options.RateLimited,
            ["engine_settings"] = new JsonArray([.. results.Options.EngineSettings.Select(s => (JsonNode?)JsonValue.Create(s))]),
        };
        var subjects = new JsonObject();
        foreach (var r in results.Subjects)
        {
            var s = new JsonObject
            {
                ["description"] = r.Subject.Description,
                ["client_mptcp"] = r.Subject.ClientMptcp,
                ["throughput_bps"] = Round(SubjectResult.Median(r.ThroughputBps), 0),
                ["throughput_bps_rounds"] = Samples(r.ThroughputBps),
                ["stalled_intervals_rounds"] = new JsonArray([.. r.StalledIntervals.Select(v => (JsonNode?)JsonValue.Create(v))]),
                ["throughput_1g_bps"] = Round(SubjectResult.Median(r.ThroughputBps1G), 0),
                ["throughput_1g_bps_rounds"] = Samples(r.ThroughputBps1G),
                ["cpu_seconds_per_gb"] = Round(SubjectResult.Median(r.CpuSecondsPerGb), 3),
                ["cpu_seconds_per_gb_rounds"] = Samples(r.CpuSecondsPerGb),
                ["connections_per_second"] = Round(SubjectResult.Median(r.ConnectionsPerSecond), 0),
                ["connections_per_second_rounds"] = Samples(r.ConnectionsPerSecond),
                ["latency_p50_ms"] = Round(SubjectResult.Median(r.LatencyP50Ms), 3),
                ["latency_p99_ms"] = Round(SubjectResult.Median(r.LatencyP99Ms), 3),
                ["connection_errors"] = r.ConnectionErrors,
                ["cpu_us_per_connection"] = Round(SubjectResult.Median(r.CpuMicrosPerConnection), 1),
                ["cpu_us_per_connection_rounds"] = Samples(r.CpuMicrosPerConnection),
                ["connect_p50_us"] = Round(SubjectResult.Median(r.ConnectP50Us), 0),
                ["connect_p99_us"] = Round(SubjectResult.Median(r.ConnectP99Us), 0),
                ["idle_bytes_per_connection"] = Round(r.IdleBytesPerConnection?.Value, 0),
                ["idle_connections_held"] = r.IdleConnectionsHeld,
                ["idle_load"] = r.IdleBytesPerConnection?.Load,
                ["errors"] = new JsonArray([.. r.Errors.Select(e => (JsonNode?)JsonValue.Create(e))]),
            };
            if (r.ProxyCounters is not null)
            {
                var counters = new JsonObject();
                foreach (var (k, v) in r.ProxyCounters.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    counters[k] = v;
                }
                s["proxy_counter_deltas"] = counters;
            }
            if (r.ClientCounters is not null)
            {
                var counters = new JsonObject();
                foreach (var (k, v) in r.ClientCounters.Where(kv => kv.Key.StartsWith("MPTcpExt", StringComparison.Ordinal)).OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    counters[k] = v;
                }
                s["client_mptcp_counter_deltas"] = counters;
            }
            if (evidence && r.SocketSnapshot is not null)
            {
                s["proxy_ss_tinM"] = r.SocketSnapshot;
            }
            if (evidence && r.SyscallSummary is not null)
            {
                s["strace_c"] = r.SyscallSummary;
                s["strace_run_bps"] = Round(r.DiagnoseThroughputBps, 0);
            }
            subjects[r.Subject.Name] = s;
        }
        json["subjects"] = subjects;
        json["aggregation"] = new JsonObject
        {
            ["two_paths_bps"] = Round(results.AggregationTwoPathsBps, 0),
            ["one_path_bps"] = Round(results.AggregationOnePathBps, 0),
            ["load"] = results.AggregationLoad,
        };
        if (engine is not null)
        {
            json["engine_syn_latency_us"] = new JsonObject
            {
                ["immediate_n"] = engine.ImmediateCount, ["immediate_p50"] = engine.ImmediateP50Us, ["immediate_p99"] = engine.ImmediateP99Us,
                ["immediate_max"] = engine.ImmediateMaxUs, ["held_n"] = engine.HeldCount, ["held_p50"] = engine.HeldP50Us,
                ["held_p99"] = engine.HeldP99Us, ["held_max"] = engine.HeldMaxUs,
            };
        }
        if (evidence && results.EngineOutputTail is not null)
        {
            json["engine_output_tail"] = results.EngineOutputTail;
        }
        json["notes"] = new JsonArray([.. results.Notes.Select(n => (JsonNode?)JsonValue.Create(n))]);
        return json;
    }

    /// <summary>One line: what <c>--json</c> prints last.</summary>
    public static string ToJsonLine(BenchResults results) => ToJson(results).ToJsonString();

    /// <summary>The results file: the table (as comments are not JSON, a "table" field) and everything else.</summary>
    public static string ToFileText(BenchResults results)
    {
        var json = ToJson(results, evidence: true);
        json["table"] = ToTable(results);
        return json.ToJsonString(Indented);
    }

    public static string ToTable(BenchResults results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var direct = results.Find("direct");
        double? directTput = direct is null ? null : SubjectResult.Median(direct.ThroughputBps);
        double? direct1G = direct is null ? null : SubjectResult.Median(direct.ThroughputBps1G);
        var sb = new StringBuilder();
        var m = results.Machine;
        sb.AppendLine(CultureInfo.InvariantCulture, $"machine: {m.CpuModel}, {m.Cores} cores, kernel {m.Kernel}, {m.DotNet}, load at start {m.LoadAverageAtStart}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"{results.Options.Rounds} interleaved round(s), iperf3 {results.Options.Seconds} s, wrk {results.Options.ConnectionSeconds} s, {results.Options.IdleConnections} idle connections; medians; ×direct = ratio to the direct TCP path");
        if (results.Options.EngineSettings.Count > 0)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"engine settings: {string.Join(' ', results.Options.EngineSettings)}");
        }
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"{"subject",-23} {"Gbit/s",7} {"×direct",7} {"@1G",6} {"×direct",7} {"CPU s/GB",8} {"conn/s",7} {"p50 ms",7} {"p99 ms",7} {"SYN µs",6} {"p99",6} {"µs/conn",7} {"idle KiB",8}  load (1 min)");
        foreach (var r in results.Subjects)
        {
            double? t = SubjectResult.Median(r.ThroughputBps);
            double? t1 = SubjectResult.Median(r.ThroughputBps1G);
            var load = SubjectResult.LoadRange(r.ThroughputBps, r.ThroughputBps1G, r.ConnectionsPerSecond);
            string loadText = load is { } l ? FormattableString.Invariant($"{l.Min:F1}–{l.Max:F1}") : "-";
            string errorText = r.Errors.Count > 0 ? FormattableString.Invariant($"  ({r.Errors.Count} error(s))") : "";
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"{r.Subject.Name,-23} {F(t / 1e9, "F2"),7} {F(Ratio(t, directTput), "F2"),7} {F(t1 / 1e9, "F2"),6} {F(Ratio(t1, direct1G), "F2"),7} {F(SubjectResult.Median(r.CpuSecondsPerGb), "F2"),8} {F(SubjectResult.Median(r.ConnectionsPerSecond), "F0"),7} {F(SubjectResult.Median(r.LatencyP50Ms), "F2"),7} {F(SubjectResult.Median(r.LatencyP99Ms), "F2"),7} {F(SubjectResult.Median(r.ConnectP50Us), "F0"),6} {F(SubjectResult.Median(r.ConnectP99Us), "F0"),6} {F(SubjectResult.Median(r.CpuMicrosPerConnection), "F1"),7} {F(r.IdleBytesPerConnection?.Value / 1024, "F1"),8}  {loadText}{errorText}");
        }
        sb.AppendLine("ratios (same run):");
        var json = ToJson(results);
        foreach (var key in RatioKeys)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {key,-46} {(json[key] is JsonNode v ? v.ToJsonString() : "null (not measured)")}");
        }
        if (results.EngineSynLatency is { } syn)
        {
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"engine receive→verdict: decided at once (pass, cache hit, SYN/ACK) n={syn.ImmediateCount} p50 {syn.ImmediateP50Us} µs p99 {syn.ImmediateP99Us} µs max {syn.ImmediateMaxUs} µs; held for a probe (cache miss) n={syn.HeldCount} p50 {syn.HeldP50Us} µs p99 {syn.HeldP99Us} µs");
        }
        sb.AppendLine("goals (issue 7, same run):");
        foreach (var g in Goals(json, results))
        {
            string verdict = g.Met switch { true => "met", false => "NOT MET", null => "not measured" };
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {g.Text,-62} {F(g.Value, "F3"),9}  {verdict}");
        }
        sb.AppendLine("goals (issue 13, same run):");
        foreach (var g in Issue13Goals(RatioKeys.ToDictionary(k => k, k => json[k] is JsonNode n ? (double?)n.GetValue<double>() : null)))
        {
            string verdict = g.Met switch { true => "met", false => "NOT MET", null when g.Value is not null => "reported", null => "not measured" };
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {g.Text,-62} {F(g.Value, "F3"),9}  {verdict}");
        }
        if (results.AggregationTwoPathsBps is double a && results.AggregationOnePathBps is double b)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"aggregation: two 50 Mbit/s paths {a / 1e6:F1} Mbit/s vs one path {b / 1e6:F1} Mbit/s (load {results.AggregationLoad})");
        }
        foreach (var note in results.Notes)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"note: {note}");
        }
        foreach (var r in results.Subjects.Where(r => r.Errors.Count > 0))
        {
            foreach (var e in r.Errors)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"error: {r.Subject.Name}: {e}");
            }
        }
        return sb.ToString();
    }

    /// <summary>One goal of issue 7: its text, the measured value (ratio, µs or KiB) and whether it is met (null: not measured).</summary>
    public sealed record Goal(string Key, string Text, double? Value, bool? Met);

    private static List<Goal> Goals(JsonObject json, BenchResults results) =>
        Goals(RatioKeys.ToDictionary(k => k, k => json[k] is JsonNode n ? (double?)n.GetValue<double>() : null), results);

    /// <summary>The goals of issue 7 in its order, each from this run's ratios and figures.</summary>
    public static List<Goal> Goals(IReadOnlyDictionary<string, double?> r, BenchResults results)
    {
        ArgumentNullException.ThrowIfNull(r);
        ArgumentNullException.ThrowIfNull(results);
        Goal AtLeast(string key, string text, double bound) => new(key, text, r[key], r[key] is double v ? v >= bound : null);
        double? cpuVsBest = r["holding_vs_haproxy_cpu_per_gb"] is double h && r["holding_vs_socat_cpu_per_gb"] is double so ? Math.Max(h, so)
            : r["holding_vs_haproxy_cpu_per_gb"] ?? r["holding_vs_socat_cpu_per_gb"];
        double? addedHit = r["syn_added_p99_us_engine_holding"];
        double? addedPass = r["syn_added_p99_us_passthrough_mptcp"];
        double? idleKiB = results.Subjects.Where(s => s.Subject is RelaySubject or EngineSubject && s.IdleBytesPerConnection is not null)
            .Select(s => (double?)s.IdleBytesPerConnection!.Value / 1024).Max();
        return
        [
            AtLeast("holding_vs_haproxy_throughput", "TCP→TCP holding throughput ≥ 1.0× HAProxy", 1.0),
            AtLeast("holding_vs_socat_throughput", "TCP→TCP holding throughput ≥ 1.0× socat -b 65536", 1.0),
            new("holding_cpu_per_gb_vs_best", "TCP→TCP relay CPU per GB ≤ the lower of HAProxy and socat (× the worse)", cpuVsBest,
                cpuVsBest is double c ? c <= 1.0 : null),
            AtLeast("holding_mptcp_vs_direct_throughput_1g", "MPTCP→TCP holding ≥ 0.97× direct at 1 Gbit/s (relay)", 0.97),
            AtLeast("engine_holding_vs_direct_throughput_1g", "MPTCP→TCP holding ≥ 0.97× direct at 1 Gbit/s (engine)", 0.97),
            AtLeast("holding_mptcp_vs_haproxy_mptcp_throughput", "MPTCP→TCP unlimited ≥ 1.0× HAProxy under mptcpize (relay)", 1.0),
            AtLeast("engine_holding_vs_haproxy_mptcp_throughput", "MPTCP→TCP unlimited ≥ 1.0× HAProxy under mptcpize (engine)", 1.0),
            AtLeast("passthrough_vs_direct_throughput", "pass-through throughput ≥ 0.97× direct", 0.97),
            AtLeast("conn_rate_passthrough_vs_direct", "pass-through connection rate ≥ 0.97× direct", 0.97),
            AtLeast("conn_rate_passthrough_mptcp_vs_direct_mptcp", "pass-through connection rate ≥ 0.97× direct (MPTCP, SYNs queued)", 0.97),
            new("syn_added_p99_us_engine_holding", "cache-hit decision adds < 100 µs at p99 (client connect, µs)", addedHit,
                addedHit is double a ? a < 100 : null),
            new("syn_added_p99_us_passthrough_mptcp", "cache-hit pass adds < 100 µs at p99 (MPTCP pass-through, µs)", addedPass,
                addedPass is double p ? p < 100 : null),
            AtLeast("conn_rate_vs_haproxy", "new connections/s ≥ HAProxy (TCP, relay)", 1.0),
            AtLeast("conn_rate_mptcp_vs_haproxy_mptcp", "new connections/s ≥ HAProxy (MPTCP, relay)", 1.0),
            AtLeast("conn_rate_engine_holding_vs_haproxy_mptcp", "new connections/s ≥ HAProxy (MPTCP, engine)", 1.0),
            new("idle_kib_per_connection", "< 64 KiB per idle held connection (worst of ours, KiB)", idleKiB, idleKiB is double k ? k < 64 : null),
        ];
    }

    /// <summary>
    /// The goals of issue 13 in its order, each from this run's figures. Bursts and cold start are not bench phases: the
    /// integration tests measure them (BurstTests with PSEL_BURST=200, ProxyColdStartTests with PSEL_COLD_STARTS=20);
    /// the bench reports the engine's start to READY and idle memory beside them.
    /// </summary>
    public static List<Goal> Issue13Goals(IReadOnlyDictionary<string, double?> r)
    {
        ArgumentNullException.ThrowIfNull(r);
        Goal AtLeast(string key, string text, double bound) => new(key, text, r[key], r[key] is double v ? v >= bound : null);
        Goal AtMost(string key, string text, double bound) => new(key, text, r[key], r[key] is double v ? v <= bound : null);
        double? cpuVsBest = r["engine_holding_vs_haproxy_mptcp_cpu_per_gb"] is double h && r["engine_holding_vs_socat_mptcp_cpu_per_gb"] is double so
            ? Math.Max(h, so)
            : r["engine_holding_vs_haproxy_mptcp_cpu_per_gb"] ?? r["engine_holding_vs_socat_mptcp_cpu_per_gb"];
        double? addedHit = r["syn_added_p99_us_engine_holding"];
        return
        [
            AtLeast("conn_rate_engine_holding_vs_haproxy_mptcp", "engine holding new connections/s ≥ 1.0× HAProxy-mptcp", 1.0),
            AtMost("engine_holding_vs_haproxy_mptcp_cpu_per_connection", "engine CPU µs per held connection ≤ HAProxy-mptcp's (×)", 1.0),
            AtLeast("engine_holding_vs_haproxy_mptcp_throughput", "engine holding unlimited ≥ 1.0× HAProxy-mptcp", 1.0),
            AtLeast("engine_holding_vs_direct_throughput_1g", "engine holding ≥ 0.97× direct behind 1 Gbit/s", 0.97),
            new("engine_holding_cpu_per_gb_vs_best", "engine CPU per GB ≤ the lower of HAProxy and socat (× the worse)", cpuVsBest,
                cpuVsBest is double c ? c <= 1.0 : null),
            new("syn_added_p99_us_engine_holding", "cache-hit SYN adds < 50 µs at p99 over direct (µs)", addedHit, addedHit is double a ? a < 50 : null),
            AtLeast("conn_rate_passthrough_vs_direct", "pass-through connection rate ≥ 0.97× direct (TCP)", 0.97),
            AtLeast("conn_rate_passthrough_mptcp_vs_direct_mptcp", "pass-through connection rate ≥ 0.97× direct (MPTCP)", 0.97),
            new("bursts", "bursts: one accept per client, subflows kept (BurstTests)", null, null),
            new("cold_start", "cold start: 20/20 intercepted (ProxyColdStartTests)", null, null),
            new("engine_start_to_ready_ms", "engine start to READY (ms, reported)", r["engine_start_to_ready_ms"], null),
            new("engine_idle_rss_kib", "engine idle RSS before any connection (KiB, reported)", r["engine_idle_rss_kib"], null),
        ];
    }

    private static double? Difference(double? a, double? b) => a is double x && b is double y ? x - y : null;

    private static double? Ratio(double? a, double? b) => a is double x && b is double y && y > 0 ? x / y : null;

    private static double? Round(double? v, int digits) => v is double x ? Math.Round(x, digits) : null;

    private static string F(double? v, string format) => v is double x ? x.ToString(format, CultureInfo.InvariantCulture) : "-";

    private static JsonArray Samples(List<Sample> samples) =>
        [.. samples.Select(s => (JsonNode?)new JsonObject { ["value"] = Math.Round(s.Value, 3), ["load"] = s.Load })];
}
