using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Lab;
using ProxySelection.LabTool.Interop;
using LabEnvironment = ProxySelection.Lab.Lab;

namespace ProxySelection.LabTool.Lab;

/// <summary>What the demo was asked to do; <c>Daemon</c> is the <c>proxysel</c> the proxies run (null: <see cref="DaemonLocator"/>'s default).</summary>
internal sealed record LabDemoOptions(int SizeMegabytes, int RateMbit, bool InstallMissing, bool Chain = true, bool Hybrid = true, ProxyBinary? Daemon = null);

/// <summary>
/// <c>proxysel lab demo</c>: brings up client ⇉ P1 → P2 → TCP-only server in fresh namespaces, downloads a file with
/// MPTCP through the chain, shows who held the connection, the subflows, throughput and the proxies' decision trace,
/// and removes everything (also on SIGINT/SIGTERM).
/// </summary>
internal sealed partial class LabDemo(TextWriter output, TextWriter error, LabDemoOptions options, TimeProvider time)
{
    /// <summary>
    /// One download's limit: three times what both paths need at their rate, plus 20 s (the defaults need about 4 s of
    /// the 33 s this gives).
    /// </summary>
    private TimeSpan DownloadLimit => TimeSpan.FromSeconds(20 + (3.0 * options.SizeMegabytes * 8.39 / (2.0 * options.RateMbit)));

    /// <summary>
    /// The demo proper (after any package installation) must finish within this, or it stops and cleans up: the two
    /// downloads, set-up, and about 10 s of throughput comparison.
    /// </summary>
    private TimeSpan Budget => TimeSpan.FromSeconds(60) + (2 * (DownloadLimit + TimeSpan.FromSeconds(5)));

    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(20);
    // On a terminal the progress line redraws itself; in a pipe or a log it prints a line every 25 %.
    private readonly bool _tty = !Console.IsOutputRedirected;

    private int _step;
    private int _processes;
    private string _directory = Path.GetTempPath();

    public async Task<int> RunAsync(CancellationToken interrupt)
    {
        WriteHeader();
        if (Gate.CheckMachine(error) is { } notReady)
        {
            return notReady;
        }

        if (!EnsurePackages())
        {
            return LabDemoExitCodes.PrerequisitesMissing;
        }

        output.WriteLine();

        using var budget = CancellationTokenSource.CreateLinkedTokenSource(interrupt);
        budget.CancelAfter(Budget);
        var directory = Directory.CreateTempSubdirectory("psel-demo-").FullName;
        _directory = directory;
        // Namespaces of a run that was killed (SIGKILL, power loss) have no one left to remove them.
        int stale = await LabRun.SweepStaleAsync(CancellationToken.None).ConfigureAwait(false);
        if (stale > 0)
        {
            output.WriteLine($"    removed {stale} namespace(s) left by an earlier run that was killed");
        }

        var lab = LabEnvironment.Create();
        bool? verdict = null;
        int exitCode;
        try
        {
            bool ok = true;
            if (options.Chain)
            {
                ok &= await RunChainAsync(lab, directory, budget.Token).ConfigureAwait(false);
            }

            if (options.Hybrid)
            {
                ok &= await RunHybridAsync(lab, directory, budget.Token).ConfigureAwait(false);
            }

            verdict = ok;
            exitCode = ok ? LabDemoExitCodes.Ok : LabDemoExitCodes.Failed;
        }
        catch (OperationCanceledException) when (budget.IsCancellationRequested)
        {
            output.WriteLine();
            output.WriteLine(interrupt.IsCancellationRequested
                ? "Interrupted: tearing everything down."
                : $"The demo did not finish within {Budget.TotalSeconds:F0} s: tearing everything down.");
            exitCode = interrupt.IsCancellationRequested ? LabDemoExitCodes.Interrupted : LabDemoExitCodes.Failed;
        }
        catch (Exception e) when (e is LabException or InvalidOperationException or TimeoutException or IOException)
        {
            output.WriteLine();
            error.WriteLine($"The demo failed: {e.Message}");
            exitCode = LabDemoExitCodes.Failed;
        }
        finally
        {
            await TearDownAsync(lab).ConfigureAwait(false);
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
                // Best effort: the temp directory only holds the downloaded copy and captures.
            }
        }

        if (verdict is { } expected)
        {
            output.WriteLine();
            output.WriteLine(expected ? "Everything came out as expected." : "Something did not come out as expected (marked ✘ above).");
        }

        return exitCode;
    }

    private void WriteHeader()
    {
        output.WriteLine("proxysel-lab demo: Multipath TCP through operator proxies, on real Linux kernels in namespaces");
        output.WriteLine();
        output.WriteLine("Multipath TCP (MPTCP, RFC 8684) lets one connection use several links at once, e.g. a home's DSL and");
        output.WriteLine("LTE lines. It only works when both ends speak it; proxysel is a proxy that speaks it for the end that does not.");
        output.WriteLine("When several such proxies sit on the way, they agree with the MP_PROXY signal that exactly one of them");
        output.WriteLine("holds each connection (ends the MPTCP side, talks plain TCP on the other and relays the bytes); the others");
        output.WriteLine("pass every packet through untouched. This demo downloads a file through such proxies and shows what happened:");
        output.WriteLine("who held the connection, its subflows (one per link), the throughput and each proxy's decisions.");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Each link is limited to {options.RateMbit} Mbit/s, which carries about {PayloadMbit(options.RateMbit):F1} Mbit/s of TCP data (headers count"));
        output.WriteLine("against the limit), so a connection using both links gets about twice that.");
        output.WriteLine($"Everything runs in throw-away network namespaces on this machine (names starting with {LabRun.Prefix})");
        output.WriteLine("and is removed at the end, also on Ctrl-C.");
        output.WriteLine();
        output.WriteLine("Words used below");
        output.WriteLine("  subflow       one TCP connection over one link; an MPTCP connection bundles one subflow per link");
        output.WriteLine("  holder        the proxy that ends a connection: it speaks MPTCP on one side and plain TCP on the other,");
        output.WriteLine("                relaying the bytes between them");
        output.WriteLine("  pass-through  a proxy that is not the holder and forwards the connection's packets unchanged");
        output.WriteLine("  client leg    the holder's connection toward the client; upstream (server leg): toward the server.");
        output.WriteLine("                Their state: Active = MPTCP in use, NotMptcp = plain TCP socket, FellBackToTcp = opened");
        output.WriteLine("                as MPTCP, but the other end answered in plain TCP");
        output.WriteLine("  units         MB = 2^20 bytes; Mbit/s = 10^6 bits of data per second");
        output.WriteLine();
    }

    /// <summary>TCP data a link shaped to <paramref name="mbit"/> carries: 1448 bytes per 1514-byte frame (timestamps on, 1500 MTU).</summary>
    private static double PayloadMbit(int mbit) => mbit * 1448.0 / 1514;

    private PrerequisiteGate Gate { get; } = new("demo", Prerequisites.Tools, MachineProbe.ThisMachine);

    private bool EnsurePackages() => Gate.EnsureTools(options.InstallMissing, output, error);

    private async Task<bool> RunChainAsync(LabEnvironment lab, string directory, CancellationToken ct)
    {
        output.WriteLine("Scenario 1: a chain. The client speaks MPTCP over dsl and lte, the server only plain TCP; two proxies,");
        output.WriteLine("P1 and P2, sit in between and must agree which one of them holds the connection.");
        output.WriteLine();
        output.WriteLine($"  client ={DemoChain.Dsl}=> P1 --> P2 --> server (nginx, TCP only)");
        output.WriteLine($"         ={DemoChain.Lte}=>");
        output.WriteLine();
        var step = Step("Building the chain: 4 network namespaces, 4 links, routes, MPTCP endpoints");
        var chain = await DemoChain.BuildAsync(lab, string.Create(CultureInfo.InvariantCulture, $"{options.RateMbit}mbit"), ct).ConfigureAwait(false);
        step.Done($"{string.Join(", ", chain.All.Select(n => n.Role))}; dsl and lte shaped to {options.RateMbit} Mbit/s (HTB)");

        step = Step($"Starting nginx (plain TCP) with a {options.SizeMegabytes} MB file");
        _processes++;
        var nginx = await NginxServer.StartAsync(chain.ServerNs, 80, IPAddress.Parse(DemoChain.Server), mptcp: false, StepTimeout).WaitAsync(ct).ConfigureAwait(false);
        var sha = LabNetwork.CreateRandomFile(Path.Combine(nginx.WebRoot, "demo.bin"), (long)options.SizeMegabytes << 20);
        step.Done($"http://{DemoChain.Server}/demo.bin");

        step = Step("Starting the proxies: P1 and P2, each its own `proxysel run` (explicit mode, policy first, shared operator key)");
        var keyFile = await KeyFileAsync(directory, ct).ConfigureAwait(false);
        var p2 = StartProxy(chain.P2, 2, keyFile);
        var p1 = StartProxy(chain.P1, 1, keyFile);
        await p2.WaitForOutputAsync("proxysel: running", StepTimeout, ct).ConfigureAwait(false);
        await p1.WaitForOutputAsync("proxysel: running", StepTimeout, ct).ConfigureAwait(false);
        step.Done($"P1 pid {p1.Pid}, P2 pid {p2.Pid}");
        output.WriteLine("    chain up");

        // SYN, FIN and RST segments on both sides of P2: few packets, and they carry every option a proxy could add.
        const string filter = "tcp port 80 and (tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)";
        _processes += 2;
        var downCapture = await chain.P2.StartCaptureAsync("downlink", Path.Combine(directory, "p2-down.pcap"), filter, cancellationToken: ct).ConfigureAwait(false);
        var upCapture = await chain.P2.StartCaptureAsync("uplink", Path.Combine(directory, "p2-up.pcap"), filter, cancellationToken: ct).ConfigureAwait(false);

        output.WriteLine($"[{++_step}] Downloading {options.SizeMegabytes} MB with MPTCP (mptcpize run curl) from the client through P1 and P2");
        var download = await DownloadAsync(chain.Client, mptcp: true, $"http://{DemoChain.Server}/demo.bin", Path.Combine(directory, "demo.bin"),
            chain.Client, DemoChain.Server, ct).ConfigureAwait(false);
        bool intact = download.Bytes == (long)options.SizeMegabytes << 20 && LabNetwork.Sha256OfFile(Path.Combine(directory, "demo.bin")) == sha;

        step = Step("Collecting the proxies' state (stopping them: each removes its rules and prints its counters)");
        await WaitForRelayLineAsync(p1, ct).ConfigureAwait(false);
        var downPackets = await downCapture.StopAsync().ConfigureAwait(false);
        var upPackets = await upCapture.StopAsync().ConfigureAwait(false);
        await p1.StopAsync().ConfigureAwait(false);
        await p2.StopAsync().ConfigureAwait(false);
        await WaitForStoppedAsync(p1, ct).ConfigureAwait(false);
        await WaitForStoppedAsync(p2, ct).ConfigureAwait(false);
        bool rulesRemoved = p1.Output.Contains("rules removed", StringComparison.Ordinal) && p2.Output.Contains("rules removed", StringComparison.Ordinal);
        step.Done(rulesRemoved ? "both stopped and removed their rules" : "a proxy did not report its rules removed ✘");

        var ok = rulesRemoved & Report(download, intact, ProxyTrace.Read(p1), ProxyTrace.Read(p2), downPackets, upPackets);
        await nginx.DisposeAsync().ConfigureAwait(false);
        return ok;
    }

    /// <summary>One operator key for all proxies, so each verifies the others' MP_PROXY tags.</summary>
    private static async Task<string> KeyFileAsync(string directory, CancellationToken ct)
    {
        var keyFile = Path.Combine(directory, "operator.key");
        if (!File.Exists(keyFile))
        {
            await File.WriteAllTextAsync(keyFile, Convert.ToHexString(RandomNumberGenerator.GetBytes(32)), ct).ConfigureAwait(false);
        }

        return keyFile;
    }

    private LabProcess StartProxy(NetNamespace ns, int id, string keyFile, string role = "downgrade", string ports = "80")
    {
        _processes++;
        var (file, prefix) = ProxyselCommand();
        var events = Path.Combine(_directory, $"{ns.Name}-events.jsonl");
        return ProxyTrace.Track(ns.StartProcess(file, [.. prefix, "run", "--role", role, "--ports", ports, "--mode", "explicit", "--policy", "first",
            "--proxy-id", id.ToString(CultureInfo.InvariantCulture), "--key-file", keyFile, .. ProxyTrace.EventsArguments(events)]), events);
    }

    /// <summary>The daemon the proxies run: the one the command line resolved, else <see cref="DaemonLocator"/>'s default.</summary>
    private (string File, IReadOnlyList<string> Prefix) ProxyselCommand()
    {
        var daemon = options.Daemon ?? DaemonLocator.Default();
        return (daemon.File, daemon.Prefix);
    }

    /// <summary>What one download showed: curl's figures, bytes per path (interface counters), the subflows seen.</summary>
    private sealed record Download(int HttpStatus, long Bytes, double Seconds, double SteadyMbit, long DslBytes, long LteBytes,
        IReadOnlyList<(string Local, string Remote)> Subflows);

    /// <summary>
    /// curl in <paramref name="client"/> (under mptcpize when <paramref name="mptcp"/>) saving <paramref name="url"/>; while it
    /// runs, a progress line and the MPTCP subflows toward <paramref name="subflowDestination"/> seen in
    /// <paramref name="pathNamespace"/>, whose dsl and lte receive counters give the bytes per path.
    /// </summary>
    private async Task<Download> DownloadAsync(NetNamespace client, bool mptcp, string url, string path,
        NetNamespace pathNamespace, string subflowDestination, CancellationToken ct)
    {
        long total = (long)options.SizeMegabytes << 20;
        var dsl0 = await HybridThroughput.RxBytesAsync(pathNamespace, DemoChain.Dsl).ConfigureAwait(false);
        var lte0 = await HybridThroughput.RxBytesAsync(pathNamespace, DemoChain.Lte).ConfigureAwait(false);
        string[] curlArgs = ["curl", "-sS", "-o", path, "-w", "result %{http_code} %{size_download} %{time_total}\n", "--max-time",
            DownloadLimit.TotalSeconds.ToString("F0", CultureInfo.InvariantCulture), url];
        _processes++;
        var curl = mptcp ? client.StartProcess("mptcpize", ["run", .. curlArgs]) : client.StartProcess(curlArgs[0], curlArgs[1..]);
        var subflows = new List<(string, string)>();
        var started = time.GetTimestamp();
        (double Seconds, long Bytes)? steadyFrom = null;
        (double Seconds, long Bytes) last = (0, 0);
        int lastQuarter = -1;
        string[] spinner = ["|", "/", "-", "\\"];
        for (int tick = 0; !curl.HasExited; tick++)
        {
            ct.ThrowIfCancellationRequested();
            if (time.GetElapsedTime(started) > DownloadLimit + TimeSpan.FromSeconds(5))
            {
                throw new TimeoutException($"the download did not end within {DownloadLimit.TotalSeconds:F0} s");
            }

            foreach (var subflow in await SubflowsAsync(pathNamespace, subflowDestination).ConfigureAwait(false))
            {
                if (!subflows.Contains(subflow))
                {
                    subflows.Add(subflow);
                }
            }

            long have = File.Exists(path) ? new FileInfo(path).Length : 0;
            int percent = (int)(100 * have / Math.Max(1, total));
            double seconds = time.GetElapsedTime(started).TotalSeconds;
            // Steady rate: from the first sample after one second (slow start and the proxies' setup behind us).
            if (seconds >= 1 && have < total)
            {
                steadyFrom ??= (seconds, have);
                last = (seconds, have);
            }

            string line = string.Create(CultureInfo.InvariantCulture,
                $"{percent,3}%  {have / 1048576.0,6:F1} MB  {have * 8 / 1e6 / Math.Max(seconds, 0.001),6:F1} Mbit/s on average so far  subflows seen: {subflows.Count}");
            if (_tty)
            {
                output.Write($"\r    {spinner[tick % 4]} {line}");
            }
            else if (percent / 25 > lastQuarter)
            {
                lastQuarter = percent / 25;
                output.WriteLine($"      {line}");
            }

            await Task.Delay(200, ct).ConfigureAwait(false);
        }

        var dsl = await HybridThroughput.RxBytesAsync(pathNamespace, DemoChain.Dsl).ConfigureAwait(false) - dsl0;
        var lte = await HybridThroughput.RxBytesAsync(pathNamespace, DemoChain.Lte).ConfigureAwait(false) - lte0;
        var match = CurlResultPattern().Match(curl.Output);
        if (curl.ExitCode != 0 || !match.Success)
        {
            throw new InvalidOperationException($"curl failed (exit code {curl.ExitCode}): {curl.Output.Trim()}");
        }

        double steady = steadyFrom is { } from && last.Seconds > from.Seconds + 0.5
            ? (last.Bytes - from.Bytes) * 8 / 1e6 / (last.Seconds - from.Seconds)
            : 0;
        var download = new Download(int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture),
            long.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture),
            double.Parse(match.Groups[3].Value, CultureInfo.InvariantCulture), steady, dsl, lte, subflows);
        var done = string.Create(CultureInfo.InvariantCulture,
            $"    100%  {download.Bytes / 1048576.0:F1} MB in {download.Seconds:F2} s, HTTP {download.HttpStatus}");
        output.WriteLine(_tty ? $"\r{done}{new string(' ', 30)}" : done);
        return download;
    }

    /// <summary>The client's TCP sockets toward the server that are MPTCP subflows (ss shows the <c>tcp-ulp-mptcp</c> ULP).</summary>
    private static async Task<IReadOnlyList<(string Local, string Remote)>> SubflowsAsync(NetNamespace ns, string destination)
    {
        var result = await ns.RunAsync("ss", ["-tniH", "dst", destination], StepTimeout).ConfigureAwait(false);
        var found = new List<(string, string)>();
        (string, string)? current = null;
        foreach (var line in result.StdOut.Split('\n'))
        {
            var socket = SocketLinePattern().Match(line);
            if (socket.Success)
            {
                // ss names the device of a bound address: 198.18.2.2%lte:32785.
                current = (ScopePattern().Replace(socket.Groups[1].Value, ""), ScopePattern().Replace(socket.Groups[2].Value, ""));
            }
            else if (current is { } s && line.Contains("tcp-ulp-mptcp", StringComparison.Ordinal))
            {
                found.Add(s);
                current = null;
            }
        }

        return found;
    }

    /// <summary>The proxy's <c>stopped</c> event: its counters are final (the host writes it after the rules are removed).</summary>
    private static Task WaitForStoppedAsync(LabProcess proxy, CancellationToken ct) =>
        ProxyTrace.WaitForAsync(proxy, e => e.Event == "stopped", StepTimeout, ct);

    private static async Task WaitForRelayLineAsync(LabProcess holder, CancellationToken ct)
    {
        try
        {
            await ProxyTrace.WaitForAsync(holder, e => e.Event == "relay", TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Reported below: no relay line means this proxy did not hold the connection.
        }
    }

    private bool Report(Download download, bool intact, IReadOnlyList<ProxyEvent> p1Output, IReadOnlyList<ProxyEvent> p2Output,
        IReadOnlyList<PcapPacket> p2Down, IReadOnlyList<PcapPacket> p2Up)
    {
        bool ok = intact && download.HttpStatus == 200;
        var p1 = ProxyTrace.Counters(p1Output);
        var p2 = ProxyTrace.Counters(p2Output);
        static bool Held(IReadOnlyDictionary<string, double> c) => c.GetValueOrDefault("intercepted") > 0 && c.GetValueOrDefault("relayed") > 0;
        static bool Untouched(IReadOnlyDictionary<string, double> c) =>
            c.Count > 0 && c.GetValueOrDefault("intercepted") == 0 && c.GetValueOrDefault("relayed") == 0 && c.GetValueOrDefault("claims_added") == 0;
        var holders = new List<string>();
        if (Held(p1))
        {
            holders.Add("P1");
        }

        if (Held(p2))
        {
            holders.Add("P2");
        }

        string actual = holders.Count == 0 ? "none" : string.Join(" and ", holders);
        bool holderOk = actual == "P1";
        ok &= holderOk && Untouched(p2);

        output.WriteLine();
        output.WriteLine("Result (chain)");
        output.WriteLine("--------------");
        output.WriteLine($"Download: {(intact ? "complete, SHA-256 matches the server's file" : "INCOMPLETE or corrupted")}");
        output.WriteLine();
        output.WriteLine("Who held the connection");
        output.WriteLine("  Policy \"first\": the first proxy on the way from the client that can hold a connection holds it; the");
        output.WriteLine("  proxies behind it see its MP_PROXY probe and stand aside.");
        output.WriteLine($"  expected holder: P1 (policy first); actual: {actual} {(holderOk ? "✔" : "✘")}");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  P1: intercepted {p1.GetValueOrDefault("intercepted")} connection(s), {p1.GetValueOrDefault("joins_intercepted") + p1.GetValueOrDefault("joins_kernel")} join(s) ({p1.GetValueOrDefault("joins_kernel")} taken in the kernel), relayed {p1.GetValueOrDefault("relayed")}, probes answered {p1.GetValueOrDefault("probes_answered")}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  P2: saw {p2.GetValueOrDefault("syns")} SYN(s), passed {p2.GetValueOrDefault("passed")}, intercepted {p2.GetValueOrDefault("intercepted")}, relayed {p2.GetValueOrDefault("relayed")}, added {p2.GetValueOrDefault("claims_added")} signals {(Untouched(p2) ? "-> passed it through untouched ✔" : "✘")}"));
        var compare = ComparePassThrough(p2Down, p2Up);
        output.WriteLine($"  captures on both sides of P2 (SYN/FIN/RST segments): {compare.Text}");
        ok &= compare.Identical;

        output.WriteLine();
        output.WriteLine("Subflows (the client's MPTCP connection, one TCP subflow per path)");
        foreach (var (local, remote) in download.Subflows)
        {
            string path = local.StartsWith(DemoChain.ClientDsl + ":", StringComparison.Ordinal) ? DemoChain.Dsl
                : local.StartsWith(DemoChain.ClientLte + ":", StringComparison.Ordinal) ? DemoChain.Lte : "?";
            output.WriteLine($"  {path,-4} {local,-22} -> {remote}");
        }

        var relay = ProxyTrace.Relay(p1Output);
        output.WriteLine($"  {download.Subflows.Count} subflows seen at the client; the holder's client leg reports subflows={relay?.GetValueOrDefault("subflows") ?? "?"}");
        ok &= download.Subflows.Count == 2;

        output.WriteLine();
        output.WriteLine("Throughput");
        WriteThroughput(download);

        output.WriteLine();
        WriteTrace(("P1", p1Output), ("P2", p2Output));

        if (relay is not null)
        {
            output.WriteLine($"  summary: P1 relayed, client leg {relay.GetValueOrDefault("client")} MPTCP with {relay.GetValueOrDefault("subflows")} subflows, server leg {relay.GetValueOrDefault("upstream")} (the probe connection, adopted)");
            output.WriteLine($"  close: {relay["reason"]}; client -> server {relay.GetValueOrDefault("up")} bytes, server -> client {relay.GetValueOrDefault("down")} bytes");
        }

        output.WriteLine();
        return ok;
    }

    private void WriteTrace(params (string Name, IReadOnlyList<ProxyEvent> Events)[] proxies)
    {
        output.WriteLine("Trace (each proxy's decision log for the connection)");
        foreach (var (name, text) in proxies)
        {
            foreach (var (line, gloss) in ProxyTrace.Events(text))
            {
                output.WriteLine($"  {name,-3}  {gloss}");
                output.WriteLine($"         {line}");
            }
        }
    }

    private void WriteThroughput(Download download)
    {
        double mbit = download.Bytes * 8 / 1e6 / Math.Max(download.Seconds, 0.001);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  total: {download.Bytes} bytes in {download.Seconds:F2} s = {mbit:F1} Mbit/s (connection set-up and TCP slow start included)"));
        if (download.SteadyMbit > 0)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  after the first second: {download.SteadyMbit:F1} Mbit/s (two {options.RateMbit} Mbit/s links carry at most about {2 * PayloadMbit(options.RateMbit):F1} Mbit/s of TCP data)"));
        }

        foreach (var (name, bytes) in new[] { (DemoChain.Dsl, download.DslBytes), (DemoChain.Lte, download.LteBytes) })
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {name,-4} {bytes,12} bytes received = {bytes * 8 / 1e6 / Math.Max(download.Seconds, 0.001),6:F1} Mbit/s (interface counter, headers included)"));
        }
    }

    /// <summary>Compares the TCP segments (header, options, payload) P2 received with those it sent: a pass-through proxy changes none.</summary>
    private static (bool Identical, string Text) ComparePassThrough(IReadOnlyList<PcapPacket> received, IReadOnlyList<PcapPacket> sent)
    {
        // Only the direction client -> server on "down" and server -> client on "up" would differ in order; compare as sets of segments.
        var a = received.Select(p => Convert.ToHexString(TcpSegment(p.IpPacket.Span))).Order(StringComparer.Ordinal).ToList();
        var b = sent.Select(p => Convert.ToHexString(TcpSegment(p.IpPacket.Span))).Order(StringComparer.Ordinal).ToList();
        if (a.Count == 0)
        {
            return (false, "nothing captured ✘");
        }

        if (a.SequenceEqual(b, StringComparer.Ordinal))
        {
            return (true, $"{a.Count} on each side, identical byte for byte ✔");
        }

        // Say where they differ: segments paired by sequence number and flags, differing byte offsets in the TCP header.
        var differences = new List<string>();
        foreach (var x in a.Where(h => !b.Contains(h)))
        {
            var twin = b.FirstOrDefault(y => !a.Contains(y) && y.Length >= 28 && x.Length >= 28 && y[8..16] == x[8..16] && y[26..28] == x[26..28]);
            var offsets = twin is null ? "no twin" : string.Join(',', Enumerable.Range(0, Math.Min(x.Length, twin.Length) / 2)
                .Where(i => x.Substring(2 * i, 2) != twin.Substring(2 * i, 2)).Select(i => i.ToString(CultureInfo.InvariantCulture)));
            differences.Add($"flags 0x{x[26..28]}: {offsets}");
        }

        return (false, $"{a.Count} in, {b.Count} out, not identical ✘ ({string.Join("; ", differences)})");
    }

    private static ReadOnlySpan<byte> TcpSegment(ReadOnlySpan<byte> ip)
    {
        // TTL and the IP checksum change at every hop; the TCP segment must not.
        if (ip.Length >= 20 && ip[0] >> 4 == 4)
        {
            int total = (ip[2] << 8) | ip[3];
            return ip[((ip[0] & 0xf) * 4)..Math.Min(total, ip.Length)];
        }

        return ip.Length >= 40 ? ip[40..] : ip;
    }

    private async Task TearDownAsync(LabEnvironment lab)
    {
        var step = Step("Tearing down: stopping processes, deleting namespaces");
        var count = lab.Namespaces.Count;
        await lab.DisposeAsync().ConfigureAwait(false);
        await LabRun.DeleteOwnNamespacesAsync().ConfigureAwait(false);
        var left = (await LabRun.ListNamespacesAsync().ConfigureAwait(false)).Count(n => n.StartsWith(LabRun.Prefix, StringComparison.Ordinal));
        step.Done(left == 0
            ? $"{count} namespaces deleted (their rules with them), {_processes} processes stopped (nginx, proxies, curl, tcpdump, iperf3); nothing of this run is left"
            : $"{left} namespaces of this run are still there!");
    }

    private StepLine Step(string text)
    {
        output.Write($"[{++_step}] {text}... ");
        return new StepLine(output, time, time.GetTimestamp());
    }

    private sealed class StepLine(TextWriter output, TimeProvider time, long started)
    {
        public void Done(string detail) =>
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{detail} ({time.GetElapsedTime(started).TotalSeconds:F1} s)"));
    }

    [GeneratedRegex(@"%[^:]+")]
    private static partial Regex ScopePattern();

    [GeneratedRegex(@"result ([0-9]{3}) ([0-9]+) ([0-9.]+)")]
    private static partial Regex CurlResultPattern();

    [GeneratedRegex(@"^\S+\s+\d+\s+\d+\s+(\S+)\s+(\S+)")]
    private static partial Regex SocketLinePattern();
}

/// <summary>Exit codes of <c>proxysel lab demo</c>.</summary>
internal static class LabDemoExitCodes
{
    public const int Ok = 0;

    /// <summary>Something did not come out as expected (holder, subflows, data) or a step failed.</summary>
    public const int Failed = 1;

    public const int NotRoot = 3;

    public const int PrerequisitesMissing = 4;

    /// <summary>SIGINT or SIGTERM (128 + 2, as a shell reports Ctrl-C).</summary>
    public const int Interrupted = 130;
}
