using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Host.Control;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// The two-path lab made ready for hostile traffic: a TCP-only nginx answering on every IPv4 address of the server,
/// <see cref="ManyDestinations"/> included (a local route: cache misses that probes really reach), an MPTCP nginx on every
/// IPv6 address, <see cref="ManyDestinationsV6"/> included (the other truth for the cache), routes in the proxy
/// back toward <see cref="SpoofedSources"/> (their SYN/ACKs reach the client namespace, which owns none of them and drops
/// them, as the Internet would for a blind spoofer), a 1 MB file, and <c>proxysel run</c> with a control socket.
/// </summary>
/// <remarks>
/// Scale: CI runs every flood for <see cref="FloodSeconds"/> (default <see cref="CiFloodSeconds"/>); set
/// <c>PSEL_HOSTILE_SECONDS</c> for longer floods by hand. Rates are the goals' own (2,000/s, 3,000/s, 20,000/s).
/// </remarks>
internal sealed class HostileLab : IAsyncDisposable
{
    /// <summary>CI's flood length (the Hostile classes together stay within 3 minutes at this scale).</summary>
    public const int CiFloodSeconds = 6;

    public const int FileBytes = 1 << 20;

    /// <summary>Spoofed sources: 198.19.0.0/16, 256 /24 prefixes (the probe limit is per /24).</summary>
    public static readonly IPAddress SpoofedSources = IPAddress.Parse("198.19.0.0");
    public const int SpoofedPrefixLength = 16;

    /// <summary>Destinations the server answers (local route 198.18.128.0/17 on its loopback).</summary>
    public static readonly IPAddress ManyDestinations = IPAddress.Parse("198.18.128.0");
    public const int ManyDestinationsPrefixLength = 17;

    /// <summary>IPv6 destinations the MPTCP server answers (local route 2001:db8:80::/64).</summary>
    public static readonly IPAddress ManyDestinationsV6 = IPAddress.Parse("2001:db8:80::");
    public const int ManyDestinationsV6PrefixLength = 64;

    public static readonly IPAddress Server = IPAddress.Parse(TwoPathTopology.ServerV4);

    private HostileLab(ProxyLab lab, string sha, string socket)
    {
        Proxy = lab;
        Sha = sha;
        ControlSocket = socket;
    }

    public ProxyLab Proxy { get; }

    public NetNamespace Client => Proxy.Topology.Client;

    public string Sha { get; }

    public string ControlSocket { get; }

    public LabProcess Daemon { get; private set; } = null!;

    public static TimeSpan FloodSeconds =>
        TimeSpan.FromSeconds(int.TryParse(Environment.GetEnvironmentVariable("PSEL_HOSTILE_SECONDS"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int s) && s > 0
            ? s
            : CiFloodSeconds);

    /// <summary>Builds the lab and starts the proxy with <paramref name="extra"/> arguments.</summary>
    public static async Task<HostileLab> StartAsync(params string[] extra)
    {
        var lab = await ProxyLab.StartAsync();
        try
        {
            var sha = lab.WriteFile("file.bin", FileBytes);
            var t = lab.Topology;
            await t.Server.IpAsync("route", "add", "local", $"{ManyDestinations}/{ManyDestinationsPrefixLength}", "dev", "lo");
            await t.Server.IpAsync("-6", "route", "add", "local", $"{ManyDestinationsV6}/{ManyDestinationsV6PrefixLength}", "dev", "lo");
            await lab.StartNginxInAsync(t.Server, ["0.0.0.0"]);
            await lab.StartNginxInAsync(t.Server, ["[::]"], mptcp: true);
            await WaitForListenersAsync(t.Server, 2);
            await t.Proxy.IpAsync("route", "add", $"{ManyDestinations}/{ManyDestinationsPrefixLength}", "via", TwoPathTopology.ServerV4);
            await t.Proxy.IpAsync("-6", "route", "add", $"{ManyDestinationsV6}/{ManyDestinationsV6PrefixLength}", "via", TwoPathTopology.ServerV6);
            await t.Proxy.IpAsync("route", "add", $"{SpoofedSources}/{SpoofedPrefixLength}", "via", TwoPathTopology.ClientPath1V4);
            // Half-open connections of a spoofed flood must not be what decides: the defaults of a stock host, stated.
            await t.Proxy.SysctlAsync(("net.ipv4.tcp_syncookies", "1"));
            var socket = Path.Combine(lab.Directory, "run", "proxysel.sock");
            var hostile = new HostileLab(lab, sha, socket);
            hostile.Daemon = await ProxyLab.StartProxyInAsync(t.Proxy, ["--set", "Proxy:ControlSocket=" + socket, .. extra]);
            return hostile;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    private static async Task WaitForListenersAsync(NetNamespace ns, int count)
    {
        var watch = Stopwatch.StartNew();
        while ((await ns.CheckAsync("ss", ["-Hltn", "sport = :80"])).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length < count)
        {
            Assert.That(watch.Elapsed, Is.LessThan(ProxyLab.Timeout), "both nginx listen");
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// <c>mptcpize run curl</c> of the 1 MB file from the client's path1 address, one after another, until
    /// <paramref name="until"/> completes (and at least <paramref name="minimum"/> ran) or <paramref name="limit"/> passed.
    /// A download counts when curl exits 0 with HTTP 200 and the SHA-256 matches.
    /// </summary>
    public async Task<Downloads> DownloadLoopAsync(Task until, int minimum, TimeSpan limit, Func<int, string>? url = null)
    {
        var watch = Stopwatch.StartNew();
        var failures = new List<string>();
        int attempts = 0, ok = 0;
        while (watch.Elapsed < limit && (!until.IsCompleted || attempts < minimum))
        {
            var output = Path.Combine(Proxy.Directory, $"download-{attempts}.bin");
            var result = await Proxy.CurlAsync(url?.Invoke(attempts) ?? ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(20));
            attempts++;
            if (result.ExitCode == 0 && result.StdOut.StartsWith("200 ", StringComparison.Ordinal) && ProxyLab.Sha256Of(output) == Sha)
            {
                ok++;
            }
            else
            {
                failures.Add($"#{attempts}: exit {result.ExitCode} {result.StdOut} {result.StdErr.Trim()}");
            }

            File.Delete(output);
        }

        return new Downloads(attempts, ok, failures);
    }

    /// <summary>
    /// Downloads the file until the cache holds the server's TCP-only state (at most 5 tries; a first probe that times
    /// out on a loaded machine leaves Unresolved, which a flush clears). Returns the downloads.
    /// </summary>
    public async Task<Downloads> PrimeAsync()
    {
        var key = Server + ":80";
        Downloads last = new(0, 0, []);
        for (int i = 0; i < 5; i++)
        {
            last = await DownloadLoopAsync(Task.CompletedTask, 1, TimeSpan.FromSeconds(60));
            if ((await CacheAsync()).GetValueOrDefault(key) == "TcpOnly")
            {
                return last;
            }

            Assert.That((await ControlClient.SendAsync(ControlSocket, ControlCommand.CacheFlush, ProxyLab.Timeout)).Ok, Is.True);
        }

        Assert.Fail($"the server's TCP-only state was not cached after 5 downloads ({last})");
        return last;
    }

    /// <summary>The daemon's resident set (VmRSS) in KiB.</summary>
    public long RssKiB()
    {
        foreach (var line in File.ReadLines($"/proc/{Daemon.Pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"no VmRSS for pid {Daemon.Pid}");
    }

    /// <summary>CPU time the daemon used so far (user + system, from /proc/PID/stat).</summary>
    public TimeSpan CpuTime()
    {
        var stat = File.ReadAllText($"/proc/{Daemon.Pid}/stat");
        // Fields after the command name (which may hold spaces): utime and stime are fields 14 and 15.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        long ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / 100.0); // USER_HZ
    }

    /// <summary>Samples <see cref="RssKiB"/> every 250 ms until <paramref name="until"/> completes; the maximum.</summary>
    public async Task<long> MaxRssWhileAsync(Task until)
    {
        long max = RssKiB();
        while (!until.IsCompleted)
        {
            max = Math.Max(max, RssKiB());
            await Task.WhenAny(until, Task.Delay(250));
        }

        return Math.Max(max, RssKiB());
    }

    /// <summary>
    /// How far above its pre-flood baseline the daemon's RSS may stay once it trimmed after a flood: what the trim cannot
    /// return — code the flood's paths compiled (tier-1 JIT), the thread pool's added threads' stacks, the GC's own
    /// committed minimum. Measured after a 30 s 2,000/s flood (issue 12, load 27): 69.0 → 110.5 peak → 76.7 MiB, so
    /// +7.6 MiB (+13.8 MiB before the trim also returned the C heap's free memory); the bound allows twice that.
    /// </summary>
    public const long TrimmedRssAboveBaselineKiB = 16 * 1024;

    /// <summary>Waits (bounded) for the daemon's "memory trimmed after a flood" line; that line.</summary>
    public async Task<string> WaitForTrimAsync(TimeSpan timeout)
    {
        const string Trimmed = "memory trimmed after a flood";
        await Daemon.WaitForOutputAsync(Trimmed, timeout);
        return Daemon.Output.Split('\n').Last(l => l.Contains(Trimmed, StringComparison.Ordinal)).Trim();
    }

    /// <summary><c>status</c> over the control socket (the daemon object: held_connections, held_syns, probes_in_flight; decisions).</summary>
    public async Task<JsonObject> StatusAsync()
    {
        var exchange = await ControlClient.SendAsync(ControlSocket, ControlCommand.Status, ProxyLab.Timeout);
        Assert.That(exchange.Ok, Is.True, exchange.Error);
        return exchange.Reply;
    }

    /// <summary>Polls <c>status</c> every 500 ms until <paramref name="until"/> completes: the maxima of held connections, held SYNs, probes in flight, and the last reply.</summary>
    public async Task<StatusMaxima> StatusWhileAsync(Task until)
    {
        int connections = 0, syns = 0, probes = 0, listed = 0;
        JsonObject last = [];
        while (!until.IsCompleted)
        {
            var exchange = await ControlClient.SendAsync(ControlSocket, ControlCommand.Status, ProxyLab.Timeout);
            if (exchange.Ok && exchange.Reply["daemon"] is JsonObject daemon)
            {
                last = exchange.Reply;
                connections = Math.Max(connections, (int)daemon["held_connections"]!);
                syns = Math.Max(syns, (int)daemon["held_syns"]!);
                probes = Math.Max(probes, (int)daemon["probes_in_flight"]!);
                listed = Math.Max(listed, (exchange.Reply["connections"] as JsonArray)?.Count ?? 0);
            }

            await Task.WhenAny(until, Task.Delay(500));
        }

        return new StatusMaxima(connections, listed, syns, probes, last);
    }

    /// <summary>The capability cache over the control socket: destination → state.</summary>
    public async Task<IReadOnlyDictionary<string, string>> CacheAsync()
    {
        var exchange = await ControlClient.SendAsync(ControlSocket, ControlCommand.CacheShow, ProxyLab.Timeout);
        Assert.That(exchange.Ok, Is.True, exchange.Error);
        return (exchange.Reply["entries"] as JsonArray ?? []).OfType<JsonObject>()
            .ToDictionary(e => (string)e["destination"]!, e => (string)e["state"]!, StringComparer.Ordinal);
    }

    /// <summary>Packets the kernel dropped on the proxy's queue (queue full, and userspace send failures): nfnetlink_queue's counters.</summary>
    public async Task<(long QueueDropped, long UserDropped)> QueueDropsAsync()
    {
        var text = await Proxy.Topology.Proxy.CheckAsync("cat", ["/proc/net/netfilter/nfnetlink_queue"]);
        long queue = 0, user = 0;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 7)
            {
                queue += long.Parse(f[5], CultureInfo.InvariantCulture);
                user += long.Parse(f[6], CultureInfo.InvariantCulture);
            }
        }

        return (queue, user);
    }

    /// <summary>The daemon's events so far (the JSON-lines file <c>--events</c> writes).</summary>
    public IReadOnlyList<ProxyEvent> Events(string? name = null) => ProxyLab.Events(Daemon, name);

    /// <summary>Waits (bounded) for the first event <paramref name="name"/> that matches <paramref name="match"/>.</summary>
    public async Task<ProxyEvent> WaitForEventAsync(string name, Func<ProxyEvent, bool> match)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var found = Events(name).FirstOrDefault(match);
            if (found is not null)
            {
                return found;
            }

            Assert.That(watch.Elapsed, Is.LessThan(ProxyLab.Timeout), $"no matching '{name}' event");
            await Task.Delay(50);
        }
    }

    /// <summary>Bytes the daemon printed (its log) so far; the lab keeps the last 1 MiB, so a value near that means at least that.</summary>
    public long LogBytes() => System.Text.Encoding.UTF8.GetByteCount(Daemon.Output);

    /// <summary>Spoofed MP_CAPABLE SYNs from <see cref="SpoofedSources"/> to <paramref name="destination"/> (a prefix when given a length).</summary>
    public Task<GeneratorResult> SpoofedSynFloodAsync(IPAddress destination, int destinationPrefixLength, double rate, TimeSpan duration, int seed = 1) =>
        SegmentGenerator.RunAsync(Client, HostileSegment.MpCapableSyn(SpoofedSources, destination) with
        {
            SourcePrefixLength = SpoofedPrefixLength,
            DestinationPrefixLength = destinationPrefixLength,
        }, new GeneratorLimits(rate, (long)(rate * duration.TotalSeconds), duration + TimeSpan.FromSeconds(5)), seed);

    public static string Load() => File.ReadAllText("/proc/loadavg").Trim();

    public ValueTask DisposeAsync() => Proxy.DisposeAsync();
}

/// <summary>What <c>status</c> showed at most during an attack (slots in use = held connections).</summary>
internal sealed record StatusMaxima(int HeldConnections, int Listed, int HeldSyns, int ProbesInFlight, JsonObject Last)
{
    public override string ToString() => $"status maxima: held_connections {HeldConnections} (listed {Listed}), held_syns {HeldSyns}, probes_in_flight {ProbesInFlight}";
}

/// <summary>Legitimate downloads beside an attack: how many ran, how many came back whole.</summary>
internal sealed record Downloads(int Attempts, int Succeeded, IReadOnlyList<string> Failures)
{
    public double SuccessRate => Attempts == 0 ? 0 : (double)Succeeded / Attempts;

    public override string ToString() => FormattableString.Invariant($"{Succeeded}/{Attempts} downloads whole ({SuccessRate:P1})") +
        (Failures.Count > 0 ? "; first failures: " + string.Join(" | ", Failures.Take(3)) : "");
}
