using System.Globalization;
using System.Net;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.ScaleOut;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>Running downloads (<see cref="ScaleOutLab.StartLongTransfersAsync"/>) and what each instance holds of them.</summary>
internal sealed record LongTransfers(Task<IReadOnlyList<(CommandResult Curl, string Output)>> Running, IReadOnlyList<long> Held);

/// <summary>
/// <see cref="EcmpInstancesTopology"/> with the real pieces: nginx (TCP only) serving a seeded file on the server, one
/// <c>proxysel run --role downgrade</c> per instance in instance mode (its own BGP announce and withdraw through birdc),
/// under <c>proxysel-stop-post</c> (ExecStopPost='s part: the withdraw after a daemon that died), and MPTCP curls in the client.
/// </summary>
internal sealed class ScaleOutLab : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>The per-namespace counters the tests read (nstat names).</summary>
    public static readonly string[] Counters =
    [
        "MPTcpExtMPCapableSYNRX", "MPTcpExtMPCapableSYNACKRX", "MPTcpExtMPJoinSynRx", "MPTcpExtMPJoinSynAckRx",
        "MPTcpExtMPJoinNoTokenFound", "MPTcpExtMPJoinSynBackupRx", "MPTcpExtMismatchPortSynRx", "MPTcpExtMismatchPortAckRx",
        "MPTcpExtMPJoinSynTxCreatSkErr", "MPTcpExtMPJoinSynTx", "MPTcpExtMPJoinAckHMacFailure", "MPTcpExtAddAddr", "MPTcpExtAddAddrTx",
        // Why a client that got ADD_ADDR would not join: dropped by its path manager, or the join's socket failed.
        "MPTcpExtAddAddrDrop", "MPTcpExtAddAddrTxDrop", "MPTcpExtEchoAdd", "MPTcpExtMPJoinSynTxBindErr", "MPTcpExtMPJoinSynTxConnectErr",
        // Where a join the holder received may end without its SYN/ACK reaching the client, or without its third ACK.
        "MPTcpExtMPJoinAckRx", "MPTcpExtMPJoinRejected", "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop", "TcpExtTCPSynRetrans",
        // A connection that falls back to TCP refuses its join's SYN/ACK (reset, no counter of its own): which fallback.
        "MPTcpExtMPCapableFallbackACK", "MPTcpExtMPCapableFallbackSYNACK", "MPTcpExtDSSNotMatching", "MPTcpExtDSSCorruptionFallback",
        "MPTcpExtDSSCorruptionReset", "MPTcpExtInfiniteMapTx", "MPTcpExtInfiniteMapRx", "MPTcpExtDSSNoMatchTCP", "MPTcpExtMPRstTx", "MPTcpExtMPRstRx",
        "MPTcpExtMPCapableDataFallback", "MPTcpExtDssFallback", "MPTcpExtFallbackFailed", "MPTcpExtRmSubflow", "TcpExtEmbryonicRsts", "TcpOutRsts",
    ];

    private readonly ProxySelection.Lab.Lab _lab;
    private readonly NginxServer _nginx;
    private readonly LabProcess?[] _instances;

    private ScaleOutLab(ProxySelection.Lab.Lab lab, EcmpInstancesTopology topology, NginxServer nginx, string directory)
    {
        _lab = lab;
        Topology = topology;
        _nginx = nginx;
        Directory = directory;
        _instances = new LabProcess?[topology.Instances.Count];
    }

    public EcmpInstancesTopology Topology { get; }

    public string Directory { get; }

    public static async Task<ScaleOutLab> StartAsync(int instances, bool bfd = false)
    {
        var lab = ProxySelection.Lab.Lab.Create();
        var directory = System.IO.Directory.CreateTempSubdirectory("psel-scale-").FullName;
        try
        {
            var topology = await EcmpInstancesTopology.BuildAsync(lab, instances, directory, bfd).WaitAsync(Timeout);
            var nginx = await NginxServer.StartAsync(topology.Server, 80, IPAddress.Parse(EcmpInstancesTopology.ServerV4), serverDirectives: PacedLocation).WaitAsync(Timeout);
            return new ScaleOutLab(lab, topology, nginx, directory);
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// A lab of <paramref name="namespaces"/> instances with the first <paramref name="started"/> running and warmed up
    /// (<see cref="WarmUpAsync"/>; the SOCKS front needs none: <paramref name="warmUp"/> false), serving <c>file.bin</c>
    /// (<see cref="Sha"/>) and <c>long.bin</c> (<see cref="LongSha"/>).
    /// </summary>
    public static async Task<ScaleOutLab> StartWarmAsync(int namespaces, int started, bool warmUp = true, bool v6 = false, bool bfd = false)
    {
        var lab = await StartAsync(namespaces, bfd);
        try
        {
            lab.V6 = v6;
            lab.Sha = lab.WriteFile("file.bin", FileSize);
            lab.LongSha = lab.WriteFile("long.bin", 4 * 1024 * 1024);
            for (int i = 1; i <= started; i++)
            {
                await lab.StartInstanceAsync(i);
            }

            lab.WarmUpRounds = warmUp ? await lab.WarmUpAsync("file.bin") : 0;
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    public const int FileSize = 1536 * 1024;

    /// <summary>
    /// The server's own pace for <c>/paced/NAME</c> (the file NAME, the same bytes): nginx allows this rate times the whole
    /// seconds since the request began, plus one, so <see cref="FileSize"/> (4.8 × 320 KiB) takes 3 to 4 s on the wire
    /// and its connection stays established that long (at 384 KiB/s it took 2.01 s when a request began just before a
    /// second turned). A client's rate limit would not do: curl paces its reads, the receive buffer takes the whole file
    /// and the DATA_FIN within milliseconds, and a connection can close before its join completes.
    /// </summary>
    public const string PacedRate = "320k";

    private const string PacedLocation = "location /paced/ { limit_rate " + PacedRate + "; rewrite ^/paced/(.*)$ /$1 break; }";

    /// <summary>Transparent downloads go to the server's IPv6 address, and the instances announce their IPv6 addresses.</summary>
    public bool V6 { get; private set; }

    public string Sha { get; private set; } = "";

    public string LongSha { get; private set; } = "";

    public int WarmUpRounds { get; private set; }

    /// <summary>
    /// Shapes the router toward the client to 2 × 40 Mbit/s (a curl rate limit would not do: the client's receive buffer
    /// takes the whole file at once, and nothing would be in flight), starts <paramref name="count"/> downloads of
    /// <c>long.bin</c> (4 MiB: about 6 s for 15) and returns once each has its join (bounded by <see cref="Timeout"/>),
    /// with how many each instance holds.
    /// </summary>
    public async Task<LongTransfers> StartLongTransfersAsync(int count, bool socks = false)
    {
        await Topology.Router.SetRateLimitAsync("path1", "40mbit");
        await Topology.Router.SetRateLimitAsync("path2", "40mbit");
        var before = await Task.WhenAll(Topology.Instances.Select(CountersAsync));
        var joinsBefore = (await CountersAsync(Topology.Client))["MPTcpExtMPJoinSynAckRx"];
        var running = DownloadAsync("long.bin", count, count, "100M", "long", socks);
        var deadline = DateTime.UtcNow + Timeout;
        while ((await CountersAsync(Topology.Client))["MPTcpExtMPJoinSynAckRx"] - joinsBefore < count && DateTime.UtcNow < deadline && !running.IsCompleted)
        {
            await Task.Delay(100);
        }

        var held = (await Task.WhenAll(Topology.Instances.Select(CountersAsync)))
            .Select((c, i) => c["MPTcpExtMPCapableSYNRX"] - before[i]["MPTcpExtMPCapableSYNRX"]).ToList();
        return new LongTransfers(running, held);
    }

    /// <summary>Writes a seeded random file into nginx's root; returns its SHA-256.</summary>
    public string WriteFile(string name, int bytes) => LabNetwork.CreateRandomFile(Path.Combine(_nginx.WebRoot, name), bytes);

    /// <summary>Starts instance <paramref name="instance"/> (1-based) and returns once the router's group has it.</summary>
    public async Task<LabProcess> StartInstanceAsync(int instance)
    {
        var process = await Topology.StartInstanceAsync(instance,
        [
            "dotnet", ProxyLab.ProxyselDll, "run", "--role", "downgrade", "--ports", "80",
            "--set", $"Proxy:ControlSocket={Path.Combine(Directory, string.Create(CultureInfo.InvariantCulture, $"proxysel-i{instance}.sock"))}",
            "--set", "Proxy:DrainTimeout=30s",
            // The anycast SOCKS5 front: on the wildcard address, since the joins of its connections arrive at the
            // instance's unicast address (ADD_ADDR) on the same port, and a listener on the service address alone would
            // not take them.
            "--socks", string.Create(CultureInfo.InvariantCulture, $"0.0.0.0:{EcmpInstancesTopology.SocksPort}"),
            // The most the daemon allows: on this loaded machine a cold instance's first probe can exceed the default
            // 250 ms, and the destination then stays unresolved (connections passed through untouched) for a while.
            "--set", "Proxy:ProbeTimeout=400ms",
        ], Timeout, V6);
        _instances[instance - 1] = process;
        return process;
    }

    /// <summary>
    /// Downloads <paramref name="file"/> in rounds of 3 until every started instance holds at least one connection: each
    /// instance has its own capability cache, and its first probe of the server (cold, on a loaded machine) may time
    /// out and leave the server unresolved, so that instance passes new connections through untouched for the
    /// negotiator's UnresolvedTtl (30 s). Bounded: 60 rounds and 120 s. Returns the rounds it took.
    /// </summary>
    public async Task<int> WarmUpAsync(string file)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        for (int round = 1; round <= 60 && DateTime.UtcNow < deadline; round++)
        {
            await DownloadAsync(file, 3, 3, "8M", string.Create(CultureInfo.InvariantCulture, $"warm{round}"));
            var held = await Task.WhenAll(Topology.Instances.Select(CountersAsync));
            if (held.Where((_, i) => _instances[i] is not null).All(c => c["MPTcpExtMPCapableSYNRX"] > 0))
            {
                return round;
            }

            await Task.Delay(1500);
        }

        throw new InvalidOperationException("an instance never held a connection in the warm-up:\n" + string.Join("\n", _instances.Select(p => p?.Output)));
    }

    /// <summary>The client ports (path 1) of the established connections instance <paramref name="instance"/> holds on <paramref name="port"/>, as the kernel lists them now.</summary>
    public async Task<IReadOnlySet<string>> ClientPortsHeldAsync(int instance, int port) =>
        (await Topology.Instances[instance - 1].CheckAsync("ss", ["-Htn", "state", "established", string.Create(CultureInfo.InvariantCulture, $"( sport = :{port} )")]))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1])
            .Where(peer => peer.StartsWith(EcmpInstancesTopology.ClientPath1V4 + ":", StringComparison.Ordinal))
            .Select(peer => peer[(peer.LastIndexOf(':') + 1)..]).ToHashSet();

    public LabProcess Instance(int instance) => _instances[instance - 1] ?? throw new InvalidOperationException($"instance {instance} not started");

    /// <summary>The daemon's pid, as <c>proxysel-stop-post</c> printed it ("stop-post: daemon pid N").</summary>
    public int DaemonPid(int instance)
    {
        const string Prefix = "stop-post: daemon pid ";
        var line = Instance(instance).Output.Split('\n').First(l => l.StartsWith(Prefix, StringComparison.Ordinal));
        return int.Parse(line[Prefix.Length..].Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// <paramref name="count"/> MPTCP downloads of <paramref name="file"/>, at most <paramref name="parallel"/> at a time,
    /// each rate-limited by curl at <paramref name="rate"/> (its reads only; <see cref="PacedRate"/> paces the wire);
    /// returns each one's curl result (stdout: status, bytes, seconds, local port) and output path. With
    /// <paramref name="socks"/>, through the anycast SOCKS5 service address instead of transparently.
    /// </summary>
    public async Task<IReadOnlyList<(CommandResult Curl, string Output)>> DownloadAsync(string file, int count, int parallel, string rate, string tag, bool socks = false)
    {
        string[] via = socks ? ["--socks5", string.Create(CultureInfo.InvariantCulture, $"{EcmpInstancesTopology.ServiceV4}:{EcmpInstancesTopology.SocksPort}")] : [];
        var results = new (CommandResult, string)[count];
        using var gate = new SemaphoreSlim(parallel);
        var tasks = Enumerable.Range(0, count).Select(async n =>
        {
            await gate.WaitAsync(Timeout * 4);
            try
            {
                var output = Path.Combine(Directory, string.Create(CultureInfo.InvariantCulture, $"{tag}-{n}.out"));
                var curl = await Topology.Client.RunAsync("mptcpize", ["run", "curl", "-sS", "-o", output, "--limit-rate", rate, "--max-time", "90", .. via,
                    "-w", "%{http_code} %{size_download} %{time_total} %{local_port}", V6 && !socks ? $"http://[{EcmpInstancesTopology.ServerV6}]/{file}" : $"http://{EcmpInstancesTopology.ServerV4}/{file}"], TimeSpan.FromSeconds(100));
                results[n] = (curl, output);
            }
            finally
            {
                gate.Release();
            }
        });
        await Task.WhenAll(tasks);
        return results;
    }

    /// <summary>How long a download took, as curl wrote it (<see cref="DownloadAsync"/>'s third field), or -1.</summary>
    public static double Seconds(CommandResult curl)
    {
        var fields = curl.StdOut.Trim().Split(' ');
        return fields.Length == 4 && double.TryParse(fields[2], NumberStyles.Float, CultureInfo.InvariantCulture, out var s) ? s : -1;
    }

    public static Task<IReadOnlyDictionary<string, long>> CountersAsync(NetNamespace ns) => LabNetwork.ReadCountersAsync(ns, Counters);

    public async ValueTask DisposeAsync()
    {
        await _nginx.DisposeAsync();
        await _lab.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
