using System.Diagnostics;
using System.Globalization;
using System.Net;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Lab;
using ProxySelection.LabTool.Lab;
using LabEnvironment = ProxySelection.Lab.Lab;

namespace ProxySelection.LabTool.Interop;

/// <summary>A <c>proxysel</c> build to run as one instance: the file to execute and the arguments before the verb.</summary>
internal sealed record ProxyBinary(string File, IReadOnlyList<string> Prefix, string Label)
{
    /// <summary>The daemon <see cref="DaemonLocator"/> finds by default (the build of this checkout, usually).</summary>
    public static ProxyBinary Current() => DaemonLocator.Default();

    /// <summary>A build at <paramref name="path"/>: a <c>.dll</c> runs under <c>dotnet</c>, anything else is executed.</summary>
    public static ProxyBinary At(string path)
    {
        var full = Path.GetFullPath(path);
        return full.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
            ? new ProxyBinary("dotnet", [full], full)
            : new ProxyBinary(full, [], full);
    }
}

/// <summary>How the cells run.</summary>
/// <param name="Binaries">The build for P1, P2, ... (the last one serves the proxies beyond the list).</param>
/// <param name="FileBytes">Size of the downloaded file.</param>
/// <param name="RateMbit">Rate of each client path (at P1's egress toward the client): paced so the join subflow joins and tcpdump keeps up.</param>
/// <param name="CellTimeout">Bound on one cell, teardown excluded.</param>
/// <param name="LinkDelay">One-way delay on every link (netem); when set, it replaces the rate limit.</param>
internal sealed record InteropOptions(IReadOnlyList<ProxyBinary> Binaries, int FileBytes = 1 << 19, int RateMbit = 20, TimeSpan? CellTimeout = null,
    TimeSpan LinkDelay = default)
{
    public TimeSpan Timeout => CellTimeout ?? TimeSpan.FromSeconds(90);

    public ProxyBinary BinaryFor(int index) => Binaries.Count == 0 ? ProxyBinary.Current() : Binaries[Math.Min(index, Binaries.Count - 1)];
}

/// <summary>One proxy instance's part in a cell.</summary>
internal sealed record InstanceResult(
    string Proxy,
    string Binary,
    bool HeldByOutput,
    bool HeldByCapture,
    bool Identical,
    IReadOnlyDictionary<string, double> Counters,
    string Detail);

/// <summary>What one cell showed.</summary>
internal sealed record CellResult(
    InteropCell Cell,
    InteropExpectation Expected,
    string HolderByOutput,
    string HolderByCapture,
    int Subflows,
    bool Integrity,
    bool PassthroughIdentical,
    double ConnectMilliseconds,
    TimeSpan Elapsed,
    IReadOnlyList<InstanceResult> Instances,
    string? Error)
{
    public bool Ok =>
        Error is null && Integrity && PassthroughIdentical && Subflows == Expected.Subflows
        && HolderByOutput == Expected.Holder && HolderByCapture == Expected.Holder;
}

/// <summary>
/// Runs one interop cell on the real kernel: a <see cref="LinearChainTopology"/> with a <c>proxysel run</c> per proxy,
/// nginx in the server namespace, captures on both sides of every hop, one download with curl; then compares what
/// the instances said and what the captures show with the simulator's expectation. Everything the cell created is
/// removed before it returns, whatever happened.
/// </summary>
internal sealed partial class InteropRunner(InteropOptions options)
{
    /// <summary>The operator key every proxy of a cell shares (a chain's proxies verify each other's tags).</summary>
    internal const string KeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    private const int FillerPort = 8080;
    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Connections judged in a tier cell: enough that the hash spreads them over the tier.</summary>
    public const int TierConnections = 6;

    public async Task<CellResult> RunAsync(InteropCell cell, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(cell);
        if (cell.Tier > 1)
        {
            return await new TierChainRunner(options).RunCellAsync(cell, TierConnections, cancellationToken).ConfigureAwait(false);
        }

        var expected = InteropExpectation.For(cell);
        var clock = Stopwatch.StartNew();
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(options.Timeout);
        var directory = Directory.CreateTempSubdirectory("psel-interop-").FullName;
        var lab = LabEnvironment.Create();
        var proxies = new List<LabProcess>();
        try
        {
            var run = await RunInLabAsync(cell, lab, directory, proxies, bounded.Token).ConfigureAwait(false);
            return Judge(cell, expected, run, clock.Elapsed, error: null);
        }
        catch (Exception e) when (e is LabException or OperationCanceledException or TimeoutException or IOException or InvalidOperationException
            or System.ComponentModel.Win32Exception or FormatException or UnauthorizedAccessException)
        {
            var error = bounded.IsCancellationRequested && !cancellationToken.IsCancellationRequested
                ? $"cell did not finish within {options.Timeout.TotalSeconds:0} s"
                : $"{e.GetType().Name}: {e.Message}";
            var outputs = string.Join("\n", proxies.Select((p, i) => $"--- P{i + 1}:\n{p.Output}"));
            return new CellResult(cell, expected, "?", "?", 0, false, false, double.NaN, clock.Elapsed,
                [.. proxies.Select((p, i) => new InstanceResult($"P{i + 1}", options.BinaryFor(i).Label, false, false, false, ProxyTrace.Counters(ProxyTrace.Read(p)), p.Output))],
                error + (outputs.Length > 0 ? "\n" + outputs : ""));
        }
        finally
        {
            await lab.DisposeAsync().ConfigureAwait(false);
            TryDelete(directory);
        }
    }

    internal static void TryDelete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a file a dying process still holds.
        }
    }

    /// <summary>Everything the judging needs, collected while the lab was up.</summary>
    private sealed record LabRunResult(
        LinearChainTopology Topology,
        IReadOnlyList<string> Outputs,
        IReadOnlyList<IReadOnlyList<ProxyEvent>> Events,
        IReadOnlyList<List<CapturedSegment>> Down,
        IReadOnlyList<List<CapturedSegment>> Up,
        IReadOnlyList<int> ReportedLoss,
        bool Integrity,
        double ConnectMilliseconds,
        string DownloadError);

    /// <summary>The chain up and running: topology, nginx (and the filler's), every proxy past "proxysel: running".</summary>
    private sealed record Prepared(LinearChainTopology Topology, string Sha, IReadOnlyList<NginxServer> Servers) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            foreach (var server in Servers)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private async Task<Prepared> PrepareAsync(InteropCell cell, LabEnvironment lab, string directory, List<LabProcess> proxies, CancellationToken ct)
    {
        int n = cell.Proxies.Count;
        var topology = await LinearChainTopology.BuildAsync(lab, Math.Max(1, n), n == 0 ? "r" : "p", ct).ConfigureAwait(false);
        var rate = options.RateMbit.ToString(CultureInfo.InvariantCulture) + "mbit";
        if (options.LinkDelay > TimeSpan.Zero)
        {
            await topology.SetLinkDelayAsync(options.LinkDelay, ct).ConfigureAwait(false);
        }
        else
        {
            foreach (var device in LinearChainTopology.DownDevices(0))
            {
                await topology.Hops[0].SetRateLimitAsync(device, rate).ConfigureAwait(false);
            }
        }

        var server = IPAddress.Parse(LinearChainTopology.ServerV4);
        var servers = new List<NginxServer>();
        var prepared = new Prepared(topology, "", servers);
        try
        {
            var nginx = await NginxServer.StartAsync(topology.Server, 80, server, cell.ServerMptcp).ConfigureAwait(false);
            servers.Add(nginx);
            var sha = LabNetwork.CreateRandomFile(Path.Combine(nginx.WebRoot, "file.bin"), options.FileBytes);
            File.WriteAllText(Path.Combine(nginx.WebRoot, "empty.txt"), "");
            bool filler = cell.Proxies.Any(p => p.AtCapacity);
            if (filler)
            {
                // The filler is an MPTCP client toward a TCP-only server whatever the cell: the one kind a downgrade proxy holds.
                var slowServer = await NginxServer.StartAsync(topology.Server, FillerPort, server, mptcp: false).ConfigureAwait(false);
                servers.Add(slowServer);
                LabNetwork.CreateRandomFile(Path.Combine(slowServer.WebRoot, "slow.bin"), 1 << 20);
            }

            var key = Path.Combine(directory, "operator.key");
            await File.WriteAllTextAsync(key, KeyHex, ct).ConfigureAwait(false);
            for (int i = 0; i < n; i++)
            {
                proxies.Add(StartProxy(topology.Hops[i], i, cell.Proxies[i], key, filler, Path.Combine(directory, $"p{i + 1}-events.jsonl")));
            }

            foreach (var proxy in proxies)
            {
                await proxy.WaitForOutputAsync("proxysel: running", StepTimeout, ct).ConfigureAwait(false);
            }

            if (filler)
            {
                // Fills the only slot of the full proxy with a slow download on another port (not captured, not judged).
                string[] slow = ["curl", "-s", "-o", "/dev/null", "--limit-rate", "2k", $"http://{LinearChainTopology.ServerV4}:{FillerPort}/slow.bin"];
                _ = topology.Client.StartProcess("mptcpize", ["run", .. slow]);
                int full = cell.Proxies.ToList().FindIndex(p => p.AtCapacity);
                await ProxyTrace.WaitForAsync(proxies[full], e => IsIntercept(e, FillerPort), StepTimeout, ct).ConfigureAwait(false);
            }

            return prepared with { Sha = sha };
        }
        catch
        {
            await prepared.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Times <paramref name="count"/> connections, one after another, through the cell's chain (one curl, a fresh
    /// connection per request) after one that is not counted: the client's SYN to its SYN/ACK (curl's time_connect),
    /// in milliseconds. With <paramref name="cold"/>, each goes to another server address, so every proxy's cache
    /// misses every time; without, all go to the address the first one warmed.
    /// </summary>
    public async Task<IReadOnlyList<double>> TimeConnectionsAsync(InteropCell cell, int count, bool cold, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(cell);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(options.Timeout + TimeSpan.FromMilliseconds(1000.0 * count));
        var directory = Directory.CreateTempSubdirectory("psel-interop-").FullName;
        var lab = LabEnvironment.Create();
        var proxies = new List<LabProcess>();
        try
        {
            await using var prepared = await PrepareAsync(cell, lab, directory, proxies, bounded.Token).ConfigureAwait(false);
            // One connection first, to the server's own address, not counted: a fresh .NET process compiles its
            // packet path on first use (measured ~100 ms), a start-up cost, not the negotiation's.
            IReadOnlyList<string> servers = cold
                ? [LinearChainTopology.ServerV4, .. await prepared.Topology.AddServerAddressesAsync(count, bounded.Token).ConfigureAwait(false)]
                : [.. Enumerable.Repeat(LinearChainTopology.ServerV4, count + 1)];
            List<string> curl = ["curl", "-s", "-H", "Connection: close", "-w", "%{time_connect}\\n"];
            foreach (var server in servers)
            {
                curl.AddRange(["-o", "/dev/null", $"http://{server}/empty.txt"]);
            }

            var limit = TimeSpan.FromSeconds(10) + TimeSpan.FromMilliseconds(1000.0 * count);
            var run = cell.ClientMptcp
                ? await prepared.Topology.Client.RunAsync("mptcpize", ["run", .. curl], limit, cancellationToken: bounded.Token).ConfigureAwait(false)
                : await prepared.Topology.Client.RunAsync(curl[0], curl[1..], limit, cancellationToken: bounded.Token).ConfigureAwait(false);
            // A line that is not a number (curl's output cut short) is left out; the count check below names it.
            var times = run.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) ? seconds * 1000 : double.NaN)
                .Where(t => !double.IsNaN(t)).ToList();
            if (run.ExitCode != 0 || times.Count != count + 1)
            {
                throw new InvalidOperationException($"curl timed {times.Count} of {count + 1} connections (exit {run.ExitCode}): {run.StdErr}");
            }

            return times[1..];
        }
        finally
        {
            await lab.DisposeAsync().ConfigureAwait(false);
            TryDelete(directory);
        }
    }

    private async Task<LabRunResult> RunInLabAsync(InteropCell cell, LabEnvironment lab, string directory, List<LabProcess> proxies, CancellationToken ct)
    {
        int n = cell.Proxies.Count;
        await using var prepared = await PrepareAsync(cell, lab, directory, proxies, ct).ConfigureAwait(false);
        var topology = prepared.Topology;
        var sha = prepared.Sha;
        var captures = new List<(int Hop, bool Down, PacketCapture Capture)>();
        for (int i = 0; i < topology.Hops.Count; i++)
        {
            foreach (var device in LinearChainTopology.DownDevices(i))
            {
                captures.Add((i, true, await topology.Hops[i].StartCaptureAsync(device, Path.Combine(directory, $"h{i + 1}-{device}.pcap"), "tcp port 80", cancellationToken: ct).ConfigureAwait(false)));
            }

            captures.Add((i, false, await topology.Hops[i].StartCaptureAsync(LinearChainTopology.HopUp, Path.Combine(directory, $"h{i + 1}-up.pcap"), "tcp port 80", cancellationToken: ct).ConfigureAwait(false)));
        }

        var output = Path.Combine(directory, "file.out");
        var url = cell.V6 ? $"http://[{LinearChainTopology.ServerV6}]/file.bin" : $"http://{LinearChainTopology.ServerV4}/file.bin";
        string[] curl = ["curl", "-sS", "-o", output, "-w", "%{http_code} %{time_connect}", "--max-time", "30", url];
        var download = cell.ClientMptcp
            ? await topology.Client.RunAsync("mptcpize", ["run", .. curl], TimeSpan.FromSeconds(35), cancellationToken: ct).ConfigureAwait(false)
            : await topology.Client.RunAsync(curl[0], curl[1..], TimeSpan.FromSeconds(35), cancellationToken: ct).ConfigureAwait(false);
        bool integrity = download.ExitCode == 0 && File.Exists(output) && LabNetwork.Sha256OfFile(output) == sha;
        var fields = download.StdOut.Trim().Split(' ');
        double connect = fields.Length == 2 && double.TryParse(fields[1], CultureInfo.InvariantCulture, out var seconds) ? seconds * 1000 : double.NaN;

        // The holder logs its relay line once both legs closed: wait for it before the captures stop.
        for (int i = 0; i < n; i++)
        {
            if (ProxyTrace.Read(proxies[i]).Any(IsClientIntercept))
            {
                await ProxyTrace.WaitForAsync(proxies[i], IsClientRelay, StepTimeout, ct).ConfigureAwait(false);
            }
        }

        var packets = await CaptureComparison.StopAllAsync([.. captures.Select(c => c.Capture)], StepTimeout).ConfigureAwait(false);
        foreach (var proxy in proxies)
        {
            await proxy.StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }

        var down = new List<List<CapturedSegment>>();
        var up = new List<List<CapturedSegment>>();
        var loss = new List<int>();
        for (int i = 0; i < topology.Hops.Count; i++)
        {
            var mine = captures.Select((c, k) => (c, k)).Where(x => x.c.Hop == i).ToList();
            down.Add([.. mine.Where(x => x.c.Down).SelectMany(x => CaptureComparison.Segments(packets[x.k]))]);
            up.Add([.. mine.Where(x => !x.c.Down).SelectMany(x => CaptureComparison.Segments(packets[x.k]))]);
            loss.Add(mine.Sum(x => CaptureComparison.ReportedLoss(x.c.Capture)));
        }

        string downloadError = integrity ? "" : $"download: curl exit {download.ExitCode}, http {download.StdOut.Trim()}, {download.StdErr.Trim()}";
        return new LabRunResult(topology, [.. proxies.Select(p => p.Output)], [.. proxies.Select(ProxyTrace.Read)], down, up, loss, integrity, connect, downloadError);
    }

    private LabProcess StartProxy(NetNamespace ns, int index, InteropProxy proxy, string keyFile, bool fillerPort, string eventsFile)
    {
        var binary = options.BinaryFor(index);
        List<string> args =
        [
            .. binary.Prefix, "run", "--ports", fillerPort ? $"80,{FillerPort}" : "80", "--mode", proxy.ModeName, "--policy", proxy.PolicyName,
            "--proxy-id", (index + 1).ToString(CultureInfo.InvariantCulture), "--priority", proxy.Priority.ToString(CultureInfo.InvariantCulture),
            "--key-file", keyFile, .. ProxyTrace.EventsArguments(eventsFile),
        ];
        if (proxy.AtCapacity)
        {
            args.AddRange(["--capacity", "1"]);
        }

        return ProxyTrace.Track(ns.StartProcess(binary.File, args), eventsFile);
    }

    private CellResult Judge(InteropCell cell, InteropExpectation expected, LabRunResult run, TimeSpan elapsed, string? error)
    {
        var clients = LinearChainTopology.ClientAddresses(cell.V6);
        var instances = new List<InstanceResult>();
        var heldByOutput = new List<string>();
        var heldByCapture = new List<string>();
        bool allIdentical = true;
        for (int i = 0; i < run.Topology.Hops.Count; i++)
        {
            string name = $"P{i + 1}";
            bool isProxy = i < cell.Proxies.Count;
            var events = isProxy ? run.Events[i] : [];
            bool byOutput = isProxy && events.Any(IsClientIntercept);
            // The connections that carried the download through this hop (probes carry none), and the client's own.
            var flows = run.Down[i].Where(s => s.PayloadLength > 0 || clients.Contains(s.Source) || clients.Contains(s.Destination))
                .Select(s => s.Flow).ToHashSet();
            var comparison = CaptureComparison.Compare(run.Down[i], run.Up[i], s => flows.Contains(s.Flow));
            // A holder's side toward the client carries connections its other side never sees; a router passes them all,
            // less what tcpdump lost (reported, plus a few at the stop: see CaptureComparison).
            int tolerance = (2 * CaptureComparison.MaxCaptureLoss) + run.ReportedLoss[i];
            // Judged per connection that carried data: a holder ends the connections it intercepts, so none of their
            // segments leaves by its other side as it came (a transparent upstream leg may reuse the client's addresses
            // and ports, but not its sequence numbers); a router passes them all. Any segment of the connection, not
            // just its SYN, so what tcpdump loses under load (a SYN at the start of a capture, once in a CI run) does
            // not name a router the holder; half or more intercepted (a join may pass first and be retried) names a holder.
            var upIds = run.Up[i].Select(s => s.Identity).ToHashSet();
            var handshakes = run.Down[i].Where(s => s.IsSyn && flows.Contains(s.Flow) && run.Down[i].Any(d => d.Flow == s.Flow && d.PayloadLength > 0))
                .Select(s => s.Flow).Distinct()
                .Select(flow => run.Down[i].Any(d => d.Flow == flow && upIds.Contains(d.Identity))).ToList();
            int intercepted = handshakes.Count(passed => !passed);
            bool byCapture = comparison.Changed > 0 || (intercepted > 0 && intercepted * 2 >= handshakes.Count);
            bool identical = !byCapture && comparison.Before > 0 && comparison.Identical(tolerance);
            if (byOutput)
            {
                heldByOutput.Add(name);
            }

            if (byCapture)
            {
                heldByCapture.Add(name);
            }

            // A hop that neither says nor shows it held the connection must have passed it byte for byte.
            if (!byOutput && !identical)
            {
                allIdentical = false;
            }

            if (isProxy || !identical)
            {
                instances.Add(new InstanceResult(isProxy ? name : $"router{i + 1}", isProxy ? options.BinaryFor(i).Label : "-", byOutput, byCapture, identical,
                    isProxy ? ProxyTrace.Counters(events) : new Dictionary<string, double>(),
                    string.Create(CultureInfo.InvariantCulture, $"{comparison.Before} segments before, {comparison.After} after, {comparison.Changed} changed, {comparison.Missing} missing (tolerance {tolerance}), {comparison.Superseded} superseded by a retransmission") +
                    (comparison.Detail.Length > 0 && !identical ? "\n" + comparison.Detail : "")));
            }
        }

        // Subflows the client opened that got a SYN/ACK, on the client side of the first hop.
        var firstHop = run.Down[0];
        int subflows = firstHop.Where(s => s.IsSynAck && clients.Contains(s.Destination)).Select(s => s.Flow).Distinct().Count();
        return new CellResult(cell, expected, Holders(heldByOutput), Holders(heldByCapture), subflows, run.Integrity, allIdentical,
            run.ConnectMilliseconds, elapsed, instances, error ?? (run.Integrity ? null : run.DownloadError + "\n" + string.Join("\n", run.Outputs.Select((o, k) => $"--- P{k + 1}:\n{o}"))));
    }

    private static string Holders(List<string> names) => names.Count == 0 ? "none" : string.Join("+", names);

    /// <summary>An event saying this proxy intercepted a SYN from the client to the server's port 80 (not a join, not another proxy's probe).</summary>
    private static bool IsClientIntercept(ProxyEvent e) =>
        IsIntercept(e, 80) && IPEndPoint.TryParse(e.Client ?? "", out var client) && IsClient(client.Address);

    /// <summary>The relay event of a connection from the client to the server's port 80.</summary>
    private static bool IsClientRelay(ProxyEvent e) =>
        e.Event == "relay" && IPEndPoint.TryParse(e.Client ?? "", out var client) && IsClient(client.Address) && IsServer(e.Destination, 80);

    /// <summary>
    /// A SYN intercepted (at once or after its hold) toward the server's <paramref name="port"/>, or a connection accepted
    /// there: the kernel fast path intercepts a known TCP-only server's SYNs without a queue trip, so no syn event is
    /// written for them, only the accept (an answered probe is never "accepted").
    /// </summary>
    private static bool IsIntercept(ProxyEvent e, int port) =>
        (e is { Event: "syn", Verdict: "Intercept" } || e is { Event: "hold", Outcome: "Intercept" } || e is { Event: "accepted" })
        && IsServer(e.Destination, port);

    private static bool IsServer(string? destination, int port) =>
        IPEndPoint.TryParse(destination ?? "", out var server) && server.Port == port
        && (server.Address.Equals(IPAddress.Parse(LinearChainTopology.ServerV4)) || server.Address.Equals(IPAddress.Parse(LinearChainTopology.ServerV6)));

    private static bool IsClient(IPAddress address) =>
        LinearChainTopology.ClientAddresses(false).Contains(address.ToString()) || LinearChainTopology.ClientAddresses(true).Contains(address.ToString());
}
