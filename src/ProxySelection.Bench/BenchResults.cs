namespace ProxySelection.Bench;

/// <summary>One measured value and the 1-minute load average when it was taken (the machine is shared).</summary>
public sealed record Sample(double Value, double Load);

/// <summary>Everything measured for one subject. Lists hold one sample per round; figures are their medians.</summary>
public sealed class SubjectResult(BenchSubject subject)
{
    public BenchSubject Subject { get; } = subject;

    public List<Sample> ThroughputBps { get; } = [];

    public List<Sample> ThroughputBps1G { get; } = [];

    /// <summary>Per unlimited run: 0.1 s intervals below a tenth of the run's rate.</summary>
    public List<int> StalledIntervals { get; } = [];

    /// <summary>Relay CPU seconds (user + system, whole process group) per GB moved, from the unlimited runs.</summary>
    public List<Sample> CpuSecondsPerGb { get; } = [];

    public List<Sample> ConnectionsPerSecond { get; } = [];

    public List<Sample> LatencyP50Ms { get; } = [];

    public List<Sample> LatencyP99Ms { get; } = [];

    public long ConnectionErrors { get; set; }

    /// <summary>CPU µs of the subject's process group (for the engine: the whole engine) per connection wrk completed.</summary>
    public List<Sample> CpuMicrosPerConnection { get; } = [];

    /// <summary>Client connect(2) time, p50 and p99 per round (µs): the SYN decision as the client sees it.</summary>
    public List<Sample> ConnectP50Us { get; } = [];

    public List<Sample> ConnectP99Us { get; } = [];

    public Sample? IdleBytesPerConnection { get; set; }

    public int IdleConnectionsHeld { get; set; }

    /// <summary>Kernel counters that moved in the proxy namespace during the first unlimited run (MPTcpExt*, TcpExt*).</summary>
    public IReadOnlyDictionary<string, long>? ProxyCounters { get; set; }

    /// <summary>Kernel counters that moved in the client namespace (the MPTCP sender) during the same run.</summary>
    public IReadOnlyDictionary<string, long>? ClientCounters { get; set; }

    /// <summary><c>ss -tinM</c> in the proxy namespace half-way through the first unlimited run.</summary>
    public string? SocketSnapshot { get; set; }

    /// <summary><c>strace -c -f</c> of the relay during a diagnose run, and that run's rate (slowed by tracing).</summary>
    public string? SyscallSummary { get; set; }

    public double? DiagnoseThroughputBps { get; set; }

    public List<string> Errors { get; } = [];

    public static double? Median(IReadOnlyList<Sample> samples)
    {
        if (samples.Count == 0)
        {
            return null;
        }
        var sorted = samples.Select(s => s.Value).Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    public static (double Min, double Max)? LoadRange(params IReadOnlyList<Sample>[] lists)
    {
        var loads = lists.SelectMany(l => l).Select(s => s.Load).ToArray();
        return loads.Length == 0 ? null : (loads.Min(), loads.Max());
    }
}

/// <summary>The machine the figures come from.</summary>
public sealed record MachineDescription(
    string CpuModel, int Cores, string Kernel, string DotNet, string LoadAverageAtStart, string HaproxyVersion, string SocatVersion);

/// <summary>A whole run: settings, machine, per-subject results and the two-path aggregation figure.</summary>
public sealed class BenchResults(BenchOptions options, MachineDescription machine, DateTimeOffset started)
{
    public BenchOptions Options { get; } = options;

    public MachineDescription Machine { get; } = machine;

    public DateTimeOffset Started { get; } = started;

    public List<SubjectResult> Subjects { get; } = [];

    /// <summary>Two 50 Mbit/s paths: relay-mptcp (2 subflows) over relay-tcp (one path); null when not run.</summary>
    public double? AggregationTwoPathsVsOne { get; set; }

    public double? AggregationTwoPathsBps { get; set; }

    public double? AggregationOnePathBps { get; set; }

    public string? AggregationLoad { get; set; }

    public List<string> Notes { get; } = [];

    /// <summary>The engine's own receive-to-verdict figures (its <c>proxysel: syn decision latency</c> line), µs.</summary>
    public EngineSynLatency? EngineSynLatency { get; set; }

    /// <summary>The last lines of <c>proxysel run</c>'s output (decisions, counters) when the engine ran.</summary>
    public string? EngineOutputTail { get; set; }

    /// <summary>The engine daemon's start (exec) to its running line (READY), ms; null without an engine subject.</summary>
    public double? EngineStartToReadyMs { get; set; }

    /// <summary>The engine daemon's resident memory 2 s after READY, before any connection, KiB.</summary>
    public double? EngineIdleRssKiB { get; set; }

    public SubjectResult? Find(string name) => Subjects.FirstOrDefault(s => s.Subject.Name == name);
}

/// <summary>
/// What <c>proxysel run</c> printed at stop: receive-to-verdict of ingress packets decided at once (pass, cached intercept,
/// SYN/ACK: the cache hit) and of SYNs held while a probe was out (the cache miss), over the whole run, in µs.
/// </summary>
public sealed record EngineSynLatency(long ImmediateCount, long ImmediateP50Us, long ImmediateP99Us, long ImmediateMaxUs,
    long HeldCount, long HeldP50Us, long HeldP99Us, long HeldMaxUs)
{
    public const string LinePrefix = "proxysel: syn decision latency ";

    /// <summary>Reads the line <c>proxysel: syn decision latency immediate n=… p50_us=… p90_us=… p99_us=… max_us=…; held n=… …</c>.</summary>
    public static EngineSynLatency? Parse(string output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var line = output.Split('\n').LastOrDefault(l => l.StartsWith(LinePrefix, StringComparison.Ordinal));
        if (line is null)
        {
            return null;
        }
        var parts = line[LinePrefix.Length..].Split(';', StringSplitOptions.TrimEntries);
        if (parts.Length != 2 || !parts[0].StartsWith("immediate ", StringComparison.Ordinal) || !parts[1].StartsWith("held ", StringComparison.Ordinal))
        {
            return null;
        }
        var a = Fields(parts[0]);
        var b = Fields(parts[1]);
        long F(Dictionary<string, long> d, string k) => d.GetValueOrDefault(k);
        return new EngineSynLatency(F(a, "n"), F(a, "p50_us"), F(a, "p99_us"), F(a, "max_us"), F(b, "n"), F(b, "p50_us"), F(b, "p99_us"), F(b, "max_us"));
    }

    private static Dictionary<string, long> Fields(string text)
    {
        var d = new Dictionary<string, long>();
        foreach (var f in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var kv = f.Split('=', 2);
            if (kv.Length == 2 && long.TryParse(kv[1], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long v))
            {
                d[kv[0]] = v;
            }
        }
        return d;
    }
}
