using System.Diagnostics;
using System.Globalization;
using System.Net;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Lab;
using ProxySelection.Lab.ScaleOut;
using ProxySelection.LabTool.Lab;
using LabEnvironment = ProxySelection.Lab.Lab;

namespace ProxySelection.LabTool.Interop;

/// <summary>
/// A chain whose first proxy position is a tier of <paramref name="Instances"/> instances behind ECMP
/// (<see cref="EcmpInstancesTopology"/>), configured alike as <paramref name="Tier"/>; <paramref name="Second"/> is the
/// single proxy behind the tier (the second tier), or null. <paramref name="Connections"/> MPTCP downloads are judged.
/// </summary>
internal sealed record TierChainSpec(int Instances, InteropProxy Tier, InteropProxy? Second, int Connections, int FileBytes = 1 << 19, string Rate = "1M");

/// <summary>One judged download: curl's exit, whether the file was whole, its client port, and which proxies accepted it.</summary>
internal sealed record TierDownload(int ExitCode, bool Intact, int ClientPort, IReadOnlyList<string> Holders, string Error);

/// <summary>
/// What a tier chain showed. <see cref="Proxies"/> names the proxies (<c>inst1</c>..<c>instN</c>, then <c>tier2</c>);
/// <see cref="Counters"/> are their kernel MPTCP counters over the judged downloads (same order), <see cref="Held"/> the
/// judged connections each one accepted (its events), <see cref="Decisions"/> what each decided (probes over the whole
/// run, SYNs and holds over the judged downloads) for a reader of a failed run.
/// </summary>
internal sealed record TierChainRun(
    IReadOnlyList<TierDownload> Downloads,
    IReadOnlyList<string> Proxies,
    IReadOnlyList<IReadOnlyDictionary<string, long>> Counters,
    IReadOnlyDictionary<string, long> Client,
    IReadOnlyList<int> Held,
    int WarmUpRounds,
    TimeSpan Elapsed,
    IReadOnlyList<string>? Decisions = null)
{
    public const string SecondTierName = "tier2";

    public int InstanceCount => Proxies.Count(p => p != SecondTierName);

    /// <summary>The chain position of a proxy: P1 for an instance of the tier, P2 for the second tier.</summary>
    public static string Position(string proxy) => proxy == SecondTierName ? "P2" : "P1";

    /// <summary>The positions that held the judged connections, as the interop table writes a holder ("P1", "P2", "P1+P2", "none").</summary>
    public string HolderPositions
    {
        get
        {
            var positions = Downloads.SelectMany(d => d.Holders).Select(Position).Distinct().Order(StringComparer.Ordinal).ToList();
            return positions.Count == 0 ? "none" : string.Join("+", positions);
        }
    }

    /// <summary>The positions whose namespaces received the judged connections' joins (the kernel's MPJoinSynRx), written the same way.</summary>
    public string JoinPositions
    {
        get
        {
            var positions = Proxies.Where((_, i) => Counters[i]["MPTcpExtMPJoinSynRx"] > 0).Select(Position).Distinct().Order(StringComparer.Ordinal).ToList();
            return positions.Count == 0 ? "none" : string.Join("+", positions);
        }
    }

    /// <summary>Each proxy received exactly the joins of the connections it accepted (one join each), and none met an unknown token.</summary>
    public bool JoinsOnHolders =>
        Proxies.Select((_, i) => Counters[i]["MPTcpExtMPJoinSynRx"] == Held[i] && Counters[i]["MPTcpExtMPJoinNoTokenFound"] == 0).All(ok => ok);
}

/// <summary>
/// Runs a chain of tiers on the real kernel: clients → a BIRD router (ECMP by L4 hash, resilient group) → N
/// <c>proxysel run</c> instances in instance mode (C flag, ADD_ADDR of their own address) → optionally one more proxy
/// (also in instance mode: joins to its own address, which crosses the first tier) → TCP-only nginx. Every proxy shares
/// the operator key, as a chain does. After a warm-up (every proxy that probes has had a probe answered, so no instance
/// passes connections for an unresolved destination), <see cref="TierChainSpec.Connections"/> downloads are judged by
/// the proxies' events (who accepted each client connection) and the namespaces' kernel counters (joins).
/// Everything the run created is removed before it returns.
/// </summary>
internal sealed class TierChainRunner(InteropOptions options)
{
    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The counters read per namespace.</summary>
    public static readonly string[] CounterNames =
    [
        "MPTcpExtMPCapableSYNRX", "MPTcpExtMPCapableSYNACKRX", "MPTcpExtMPJoinSynRx", "MPTcpExtMPJoinSynAckRx", "MPTcpExtMPJoinNoTokenFound",
        "MPTcpExtMPJoinAckHMacFailure", "MPTcpExtMismatchPortSynRx", "MPTcpExtAddAddr", "MPTcpExtMPJoinSynTx",
    ];

    /// <summary>A tier cell's bound: the tier needs BGP to converge per instance and a warm-up, beyond a plain cell's.</summary>
    public TimeSpan Timeout => options.Timeout > TimeSpan.FromSeconds(240) ? options.Timeout : TimeSpan.FromSeconds(240);

    public async Task<TierChainRun> RunAsync(TierChainSpec spec, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var clock = Stopwatch.StartNew();
        var directory = Directory.CreateTempSubdirectory("psel-tiers-").FullName;
        var lab = LabEnvironment.Create();
        NginxServer? nginx = null;
        try
        {
            var topology = await EcmpInstancesTopology.BuildAsync(lab, spec.Instances, directory, cancellationToken: cancellationToken, secondTier: spec.Second is not null)
                .WaitAsync(StepTimeout, cancellationToken).ConfigureAwait(false);
            nginx = await NginxServer.StartAsync(topology.Server, 80, IPAddress.Parse(EcmpInstancesTopology.ServerV4)).WaitAsync(StepTimeout, cancellationToken).ConfigureAwait(false);
            var sha = LabNetwork.CreateRandomFile(Path.Combine(nginx.WebRoot, "file.bin"), spec.FileBytes);
            var key = Path.Combine(directory, "operator.key");
            await File.WriteAllTextAsync(key, InteropRunner.KeyHex, cancellationToken).ConfigureAwait(false);

            var names = new List<string>();
            var namespaces = new List<NetNamespace>();
            var events = new List<string>();
            // The second tier first: the instances' first probes cross it.
            if (spec.Second is { } second)
            {
                var file = Path.Combine(directory, "tier2-events.jsonl");
                var process = topology.SecondTier!.StartProcess(options.BinaryFor(1).File,
                    [.. Daemon(1, second, spec.Instances + 1, key, file), .. InstanceArguments(EcmpInstancesTopology.SecondTierAddress, TierChainRun.SecondTierName)]);
                await process.WaitForOutputAsync("proxysel: running", StepTimeout, cancellationToken).ConfigureAwait(false);
                await WarmSecondTierAsync(topology, file, cancellationToken).ConfigureAwait(false);
                names.Add(TierChainRun.SecondTierName);
                namespaces.Add(topology.SecondTier);
                events.Add(file);
            }

            for (int i = spec.Instances; i >= 1; i--)
            {
                var file = Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"inst{i}-events.jsonl"));
                await topology.StartInstanceAsync(i, [options.BinaryFor(0).File, .. Daemon(0, spec.Tier, i, key, file)], StepTimeout).ConfigureAwait(false);
                names.Insert(0, string.Create(CultureInfo.InvariantCulture, $"inst{i}"));
                namespaces.Insert(0, topology.Instances[i - 1]);
                events.Insert(0, file);
            }

            int rounds = await WarmUpAsync(topology, directory, events, cancellationToken).ConfigureAwait(false);
            var eventsBefore = events.Select(f => ProxyEvents.ReadFile(f).Count).ToList();
            var before = await Task.WhenAll(namespaces.Select(ns => LabNetwork.ReadCountersAsync(ns, CounterNames))).ConfigureAwait(false);
            var clientBefore = await LabNetwork.ReadCountersAsync(topology.Client, CounterNames).ConfigureAwait(false);
            var downloads = await DownloadAsync(topology, directory, spec.Connections, spec.Rate, "c", cancellationToken).ConfigureAwait(false);
            var after = await Task.WhenAll(namespaces.Select(ns => LabNetwork.ReadCountersAsync(ns, CounterNames))).ConfigureAwait(false);
            var clientAfter = await LabNetwork.ReadCountersAsync(topology.Client, CounterNames).ConfigureAwait(false);

            // Who accepted each judged connection: the accepted events written during the judged downloads.
            var accepted = events.Select((f, i) => ProxyEvents.ReadFile(f).Skip(eventsBefore[i]).Where(e => e.Event == "accepted")
                .Select(e => IPEndPoint.TryParse(e.Client ?? "", out var c) && c.Address.ToString() == EcmpInstancesTopology.ClientPath1V4 ? c.Port : -1).ToHashSet()).ToList();
            var judged = downloads.Select(d =>
            {
                var fields = d.Curl.StdOut.Trim().Split(' ');
                int port = fields.Length == 3 && int.TryParse(fields[2], CultureInfo.InvariantCulture, out var p) ? p : -2;
                bool intact = d.Curl.ExitCode == 0 && File.Exists(d.Output) && LabNetwork.Sha256OfFile(d.Output) == sha;
                return new TierDownload(d.Curl.ExitCode, intact, port, [.. names.Where((_, i) => accepted[i].Contains(port))], d.Curl.StdErr.Trim());
            }).ToList();
            var held = names.Select((_, i) => judged.Count(d => d.Holders.Contains(names[i]))).ToList();
            var decisions = events.Select((f, i) => Decisions(ProxyEvents.ReadFile(f), eventsBefore[i])).ToList();
            return new TierChainRun(judged, names, [.. namespaces.Select((_, i) => Delta(before[i], after[i]))], Delta(clientBefore, clientAfter), held, rounds, clock.Elapsed, decisions);
        }
        finally
        {
            if (nginx is not null)
            {
                await nginx.DisposeAsync().ConfigureAwait(false);
            }

            await lab.DisposeAsync().ConfigureAwait(false);
            InteropRunner.TryDelete(directory);
        }
    }

    /// <summary>Runs <paramref name="cell"/> (an MPTCP client and a TCP-only server; its first position a tier) and judges it as the interop table does.</summary>
    public async Task<CellResult> RunCellAsync(InteropCell cell, int connections, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(cell);
        var expected = InteropExpectation.For(cell);
        var clock = Stopwatch.StartNew();
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(Timeout);
        try
        {
            // Paced to last about 3 s: a join that crosses a loaded tier can arrive after a faster download has ended, and
            // the holder then resets it for an unknown token (seen once at 1 MB/s and 512 KiB, load 41).
            var rate = string.Create(CultureInfo.InvariantCulture, $"{Math.Max(64, options.FileBytes / 1024 / 3)}K");
            var spec = new TierChainSpec(cell.Tier, cell.Proxies[0], cell.Proxies.Count > 1 ? cell.Proxies[1] : null, connections, options.FileBytes, rate);
            return Judge(cell, expected, await RunAsync(spec, bounded.Token).ConfigureAwait(false), position => options.BinaryFor(position).Label);
        }
        catch (Exception e) when (e is LabException or OperationCanceledException or TimeoutException or IOException or InvalidOperationException
            or System.ComponentModel.Win32Exception or FormatException or UnauthorizedAccessException)
        {
            var error = bounded.IsCancellationRequested && !cancellationToken.IsCancellationRequested
                ? $"cell did not finish within {Timeout.TotalSeconds:0} s"
                : $"{e.GetType().Name}: {e.Message}";
            return new CellResult(cell, expected, "?", "?", 0, false, false, double.NaN, clock.Elapsed, [], error);
        }
    }

    /// <summary>
    /// A tier cell's row: the holder by the proxies' events (every connection, by position), the second holder column by
    /// the kernel (whose namespaces received the joins), subflows 2 when every connection got its join, pass-through
    /// "identical" when no proxy outside the expected position accepted a connection or received a join.
    /// </summary>
    public static CellResult Judge(InteropCell cell, InteropExpectation expected, TierChainRun run, Func<int, string>? binary = null)
    {
        ArgumentNullException.ThrowIfNull(cell);
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(run);
        int m = run.Downloads.Count;
        bool integrity = run.Downloads.All(d => d.Intact);
        bool single = run.Downloads.All(d => d.Holders.Count == 1);
        int subflows = run.Client["MPTcpExtMPJoinSynAckRx"] >= m ? 2 : 1;
        bool untouched = run.Proxies.Select((p, i) => TierChainRun.Position(p) == expected.Holder || (run.Held[i] == 0 && run.Counters[i]["MPTcpExtMPJoinSynRx"] == 0)).All(ok => ok);
        var instances = run.Proxies.Select((p, i) => new InstanceResult($"{TierChainRun.Position(p)}/{p}", binary?.Invoke(p == TierChainRun.SecondTierName ? 1 : 0) ?? "-", run.Held[i] > 0, run.Counters[i]["MPTcpExtMPJoinSynRx"] > 0,
            run.Held[i] == 0, run.Counters[i].ToDictionary(kv => kv.Key.Replace("MPTcpExt", "", StringComparison.Ordinal), kv => (double)kv.Value),
            string.Create(CultureInfo.InvariantCulture, $"accepted {run.Held[i]} of {m} connections, received {run.Counters[i]["MPTcpExtMPJoinSynRx"]} joins") +
            (run.Decisions is { } d ? "; " + d[i] : ""))).ToList();
        var problems = new List<string>();
        if (!integrity)
        {
            problems.Add("downloads: " + string.Join("; ", run.Downloads.Where(d => !d.Intact).Select(d => $"port {d.ClientPort} curl exit {d.ExitCode} {d.Error}")));
        }

        if (!single)
        {
            problems.Add("connections not held by exactly one proxy: " + string.Join(", ", run.Downloads.Where(d => d.Holders.Count != 1).Select(d => $"port {d.ClientPort} [{string.Join(' ', d.Holders)}]")));
        }

        if (!run.JoinsOnHolders)
        {
            problems.Add("joins not all on their holders (per proxy held/joins): " + string.Join(", ", run.Proxies.Select((p, i) => $"{p} {run.Held[i]}/{run.Counters[i]["MPTcpExtMPJoinSynRx"]}")));
        }

        string holder = single ? run.HolderPositions : run.HolderPositions + " (not one per connection)";
        string joins = run.JoinsOnHolders ? run.JoinPositions : run.JoinPositions + " (joins off their holders)";
        return new CellResult(cell, expected, holder, joins, subflows, integrity, untouched, double.NaN, run.Elapsed, instances,
            problems.Count == 0 ? null : string.Join("\n", problems));
    }

    private IEnumerable<string> Daemon(int position, InteropProxy proxy, int id, string key, string events) =>
    [
        .. options.BinaryFor(position).Prefix, "run", "--role", "downgrade", "--ports", "80", "--mode", proxy.ModeName, "--policy", proxy.PolicyName,
        "--proxy-id", id.ToString(CultureInfo.InvariantCulture), "--priority", proxy.Priority.ToString(CultureInfo.InvariantCulture),
        "--key-file", key, .. ProxyTrace.EventsArguments(events),
        // The most the daemon allows: a cold instance's first probe on a loaded machine can exceed the default 250 ms.
        "--set", "Proxy:ProbeTimeout=400ms",
    ];

    /// <summary>The second tier in instance mode (the C flag, ADD_ADDR of its own address), with no routing engine to drive.</summary>
    private static string[] InstanceArguments(string address, string id) =>
        ["--set", $"Proxy:AnnounceAddresses={address}", "--set", "Proxy:Instance:Enabled=true", "--set", $"Proxy:Instance:Id={id}"];

    /// <summary>
    /// Downloads in rounds of 3 until every instance of the first tier has had a probe of the server answered: each has its own
    /// capability cache, and a probe that timed out (cold, on a loaded machine) leaves the server unresolved there for
    /// 30 s, during which that proxy passes its share through untouched. Bounded: 60 rounds and 150 s.
    /// </summary>
    private static async Task<int> WarmUpAsync(EcmpInstancesTopology topology, string directory, IReadOnlyList<string> events, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        for (int round = 1; round <= 60 && deadline.Elapsed < TimeSpan.FromSeconds(150); round++)
        {
            await DownloadAsync(topology, directory, 3, "8M", string.Create(CultureInfo.InvariantCulture, $"warm{round}"), ct).ConfigureAwait(false);
            // The first tier always probes (the second was resolved before the first started).
            if (events.Take(topology.Instances.Count).All(f => ProxyEvents.ReadFile(f).Any(e => e is { Event: "probe", Outcome: "answered" })))
            {
                return round;
            }

            await Task.Delay(1500, ct).ConfigureAwait(false);
        }

        throw new TimeoutException("a proxy of the tier chain never had a probe answered in the warm-up");
    }

    /// <summary>
    /// Resolves the server in the second tier's cache before the first tier starts, with downloads from the first
    /// instance's namespace (forwarded to the second tier like the instances' legs). Were the second tier unresolved
    /// while an implicit instance probes through it (its own probe timed out on a loaded machine), it would pass that
    /// probe, the TCP-only server would answer, and the instance would cache the server as TCP-only and hold its share
    /// itself for the cache's lifetime. Bounded: 40 tries and 90 s.
    /// </summary>
    private static async Task WarmSecondTierAsync(EcmpInstancesTopology topology, string events, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        for (int i = 0; i < 40 && deadline.Elapsed < TimeSpan.FromSeconds(90); i++)
        {
            await topology.Instances[0].RunAsync("mptcpize", ["run", "curl", "-sS", "-o", "/dev/null", "--max-time", "10", $"http://{EcmpInstancesTopology.ServerV4}/file.bin"],
                TimeSpan.FromSeconds(15), cancellationToken: ct).ConfigureAwait(false);
            if (ProxyEvents.ReadFile(events).Any(e => e is { Event: "probe", Outcome: "answered" }))
            {
                return;
            }

            await Task.Delay(1000, ct).ConfigureAwait(false);
        }

        throw new TimeoutException("the second tier never had a probe of the server answered");
    }

    private static async Task<IReadOnlyList<(CommandResult Curl, string Output)>> DownloadAsync(EcmpInstancesTopology topology, string directory, int count, string rate, string tag,
        CancellationToken ct)
    {
        using var gate = new SemaphoreSlim(25);
        var tasks = Enumerable.Range(0, count).Select(async n =>
        {
            await gate.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                var output = Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"{tag}-{n}.out"));
                var curl = await topology.Client.RunAsync("mptcpize", ["run", "curl", "-sS", "-o", output, "--limit-rate", rate, "--max-time", "90",
                    "-w", "%{http_code} %{size_download} %{local_port}", $"http://{EcmpInstancesTopology.ServerV4}/file.bin"], TimeSpan.FromSeconds(100), cancellationToken: ct).ConfigureAwait(false);
                return (curl, output);
            }
            finally
            {
                gate.Release();
            }
        });
        return await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>"probes answered 2, timed_out 1; judged: syn Intercept (Reason) 4, hold Intercept 2": counts by outcome, verdict and reason.</summary>
    private static string Decisions(IReadOnlyList<ProxyEvent> events, int judgedFrom)
    {
        static string Count(IEnumerable<string> keys) =>
            string.Join(", ", keys.GroupBy(k => k, StringComparer.Ordinal).Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Key} {g.Count()}")));

        var judged = events.Skip(judgedFrom).Where(e => e.Event is "syn" or "hold" or "join").Select(e => $"{e.Event} {e.Verdict ?? e.Outcome} ({e.Reason})");
        return $"probes {Count(events.Where(e => e.Event == "probe").Select(e => e.Outcome ?? "?"))}; judged: {Count(judged)}";
    }

    private static Dictionary<string, long> Delta(IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after) =>
        after.ToDictionary(kv => kv.Key, kv => kv.Value - before.GetValueOrDefault(kv.Key));
}
