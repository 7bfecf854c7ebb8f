namespace ProxySelection.Bench;

/// <summary>How long and how often the bench measures. <see cref="QuickDefaults"/> sizes everything for CI (about a minute).</summary>
public sealed class BenchOptions
{
    /// <summary>Interleaved rounds per figure; the median is reported. Default 3.</summary>
    public int Rounds { get; set; } = 3;

    /// <summary>iperf3 seconds per throughput run. Default 8.</summary>
    public int Seconds { get; set; } = 8;

    /// <summary>wrk seconds per connection-rate run. Default 5.</summary>
    public int ConnectionSeconds { get; set; } = 5;

    /// <summary>Sequential connects per subject and round for the connect-time (SYN decision) figure. Default 1000.</summary>
    public int Connects { get; set; } = 1000;

    /// <summary>Idle connections held for the memory figure. Default 10,000.</summary>
    public int IdleConnections { get; set; } = 10_000;

    /// <summary>Also run with a 1 Gbit/s HTB on the proxy's uplink egress. Default true.</summary>
    public bool RateLimited { get; set; } = true;

    /// <summary>Two 50 Mbit/s paths, MPTCP relay against one path. Default true (off in quick mode).</summary>
    public bool Aggregation { get; set; } = true;

    /// <summary>Extra pass for the MPTCP receive investigation: strace -c on each relay during an MPTCP run,
    /// nstat and ss -tiM. Its throughput is not reported (tracing slows the relay). Default false.</summary>
    public bool Diagnose { get; set; }

    /// <summary>Remove the client's MPTCP subflow endpoints: one subflow per MPTCP connection (issue 7 item 3).</summary>
    public bool SinglePath { get; set; }

    /// <summary>Sysctls set in the proxy namespace before measuring, e.g. <c>("net.ipv4.tcp_rmem", "4096 131072 33554432")</c>.</summary>
    public IReadOnlyList<(string Key, string Value)> ProxySysctls { get; set; } = [];

    /// <summary>Sysctls set in the client namespace (the MPTCP sender in the throughput runs) before measuring.</summary>
    public IReadOnlyList<(string Key, string Value)> ClientSysctls { get; set; } = [];

    /// <summary>How to start <c>proxysel</c> (e.g. <c>["/usr/bin/proxysel"]</c> or <c>["dotnet", ".../proxysel.dll"]</c>);
    /// the bench appends <c>bench relay ...</c>. Empty: our relay runs inside the bench process (CPU from this process,
    /// no idle-memory figure for it).</summary>
    public IReadOnlyList<string> RelayCommand { get; set; } = [];

    /// <summary>How to start <c>proxysel</c> for the engine subjects (<c>proxysel run</c>); empty: none.</summary>
    public IReadOnlyList<string> EngineCommand { get; set; } = [];

    /// <summary>Settings the engine runs with (<c>Key=Value</c>, each passed as <c>--set</c>), e.g.
    /// <c>Proxy:KernelSigning=true</c>: an A/B of the engine's own paths is two runs that differ only here.</summary>
    public IReadOnlyList<string> EngineSettings { get; set; } = [];

    /// <summary>Phases to run: <c>throughput</c> (with CPU per GB), <c>connections</c> (wrk and connect times), <c>idle</c>. Default all.</summary>
    public IReadOnlyList<string> Phases { get; set; } = AllPhases;

    public static readonly IReadOnlyList<string> AllPhases = ["throughput", "connections", "idle"];

    /// <summary>Bytes our relay subjects ask for per read (≥ 64 KiB); null: the relay's default. For the MPTCP read experiments.</summary>
    public int? RelayReadSize { get; set; }

    /// <summary>Only these subjects (by name); empty: all.</summary>
    public IReadOnlyList<string> Only { get; set; } = [];

    /// <summary>Progress lines.</summary>
    public TextWriter Log { get; set; } = TextWriter.Null;

    /// <summary>CI-sized: 1 round, 2 s iperf3, 1 s wrk, 300 idle connections, no aggregation figure.</summary>
    public static BenchOptions QuickDefaults() => new()
    {
        Rounds = 1,
        Seconds = 2,
        ConnectionSeconds = 1,
        IdleConnections = 300,
        Connects = 200,
        Aggregation = false,
    };

    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Rounds is < 1 or > 20)
        {
            errors.Add("rounds must be 1..20");
        }
        if (Seconds is < 1 or > 30)
        {
            errors.Add("seconds must be 1..30");
        }
        if (ConnectionSeconds is < 1 or > 30)
        {
            errors.Add("connection seconds must be 1..30");
        }
        if (Connects is < 10 or > 100_000)
        {
            errors.Add("connects must be 10..100000");
        }
        if (Phases.Count == 0 || Phases.Any(p => !AllPhases.Contains(p)))
        {
            errors.Add("phases must be a non-empty list of throughput, connections, idle");
        }
        if (IdleConnections is < 1 or > 20_000)
        {
            errors.Add("idle connections must be 1..20000");
        }
        return errors;
    }
}
