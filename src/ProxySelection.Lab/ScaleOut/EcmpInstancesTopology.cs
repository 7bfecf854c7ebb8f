using System.Globalization;
using System.Text.Json;

namespace ProxySelection.Lab.ScaleOut;

/// <summary>
/// Issue 14's on-path transparent scale-out, IPv4:
/// <code>
///   client path1 198.18.1.2/24 ── router path1 198.18.1.1        (the client's default route: first subflows)
///   client path2 198.18.2.2/24 ── router path2 198.18.2.1        (route to 198.18.16.0/20, the instances: joins)
///   router inst{i} 198.18.(16+i).1/24 ── instance i uplink 198.18.(16+i).2    (its unicast address, announced by ADD_ADDR)
///   instance i downlink 198.18.(32+i).1/24 ── server inst{i} 198.18.(32+i).2
///   server lo 198.18.64.1/32, the served prefix 198.18.64.0/24
///   IPv6 beside each: 2001:db8:1::2/64, 2001:db8:2::2/64 (client), 2001:db8:16:i::2/64 (instance i's unicast address),
///   2001:db8:32:i::1/64 (its downlink), server 2001:db8:64::1 in the served prefix 2001:db8:64::/64
///   instance i lo 198.18.65.1/32: the anycast service address of the SOCKS5 front (Proxy:Socks), on every instance
/// </code>
/// The router runs BIRD (eBGP with every instance, ECMP by L4 hash) and <c>resilient-mirror</c>, which puts BIRD's
/// multipath route for the served prefix into a resilient nexthop group. Each instance is an on-path router for the
/// served prefix running BIRD and a daemon in instance mode (Proxy:Instance: the daemon sets
/// <c>net.mptcp.allow_join_initial_addr_port=0</c>, so its MP_CAPABLE carries the C flag, and enables and disables the
/// BGP announcement through <c>birdc</c>; <see cref="StartInstanceAsync"/>). The client accepts one
/// ADD_ADDR and opens no subflow of its own: its only second subflow is the join to the holder's announced address.
/// </summary>
public sealed class EcmpInstancesTopology
{
    public const int MaxInstances = 9;
    public const string ClientPath1V4 = "198.18.1.2";
    public const string ClientPath2V4 = "198.18.2.2";
    public const string RouterPath1V4 = "198.18.1.1";
    public const string RouterPath2V4 = "198.18.2.1";
    public const string InstancesNet = "198.18.16.0/20";

    /// <summary>The clients' links (path1, path2).</summary>
    public const string ClientNet = "198.18.0.0/20";
    public const string ServedPrefix = "198.18.64.0/24";
    public const string ServerV4 = "198.18.64.1";
    public const string ClientPath1V6 = "2001:db8:1::2";
    public const string ClientPath2V6 = "2001:db8:2::2";
    public const string RouterPath1V6 = "2001:db8:1::1";
    public const string RouterPath2V6 = "2001:db8:2::1";
    public const string InstancesNetV6 = "2001:db8:16::/48";

    /// <summary>The clients' links (2001:db8:1::/64, 2001:db8:2::/64).</summary>
    public const string ClientNetV6 = "2001:db8::/45";
    public const string ServedPrefixV6 = "2001:db8:64::/64";
    public const string ServerV6 = "2001:db8:64::1";

    /// <summary>The resilient nexthop group of the router's route for <see cref="ServedPrefixV6"/>.</summary>
    public const int GroupIdV6 = 300;

    /// <summary>The resilient nexthop group the router's route for <see cref="ServedPrefix"/> uses.</summary>
    public const int GroupId = 100;

    /// <summary>The anycast service address every instance serves SOCKS5 on, announced with the served prefix.</summary>
    public const string ServiceV4 = "198.18.65.1";

    public const int SocksPort = 1080;

    /// <summary>The resilient nexthop group of the router's route for <see cref="ServiceV4"/>.</summary>
    public const int ServiceGroupId = 200;

    public const int Buckets = 64;

    private readonly string _directory;
    private readonly string[] _controlSockets;

    private readonly bool _bfd;

    private EcmpInstancesTopology(string directory, NetNamespace client, NetNamespace router, IReadOnlyList<NetNamespace> instances, NetNamespace server, bool bfd,
        NetNamespace? secondTier = null)
    {
        SecondTier = secondTier;
        _bfd = bfd;
        _directory = directory;
        Client = client;
        Router = router;
        Instances = instances;
        Server = server;
        _controlSockets = [.. instances.Select((_, i) => Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"bird-i{i + 1}.ctl")))];
    }

    public NetNamespace Client { get; }

    public NetNamespace Router { get; }

    /// <summary>Instance i (1-based in addresses and names) is <c>Instances[i - 1]</c>.</summary>
    public IReadOnlyList<NetNamespace> Instances { get; }

    public NetNamespace Server { get; }

    /// <summary>The second proxy tier between the instances and the server (<see cref="BuildAsync"/> with <c>secondTier</c>), or null.</summary>
    public NetNamespace? SecondTier { get; }

    /// <summary>Instance <paramref name="instance"/>'s unicast address (1-based): where the router sends its share, and what it announces with ADD_ADDR.</summary>
    public static string InstanceAddress(int instance) => string.Create(CultureInfo.InvariantCulture, $"198.18.{16 + instance}.2");

    public static string RouterAddressToward(int instance) => string.Create(CultureInfo.InvariantCulture, $"198.18.{16 + instance}.1");

    private static string InstanceDownV4(int instance) => string.Create(CultureInfo.InvariantCulture, $"198.18.{32 + instance}.1");

    private static string ServerTowardV4(int instance) => string.Create(CultureInfo.InvariantCulture, $"198.18.{32 + instance}.2");

    /// <summary>Instance <paramref name="instance"/>'s IPv6 unicast address (announced with ADD_ADDR on IPv6 connections).</summary>
    public static string InstanceAddressV6(int instance) => string.Create(CultureInfo.InvariantCulture, $"2001:db8:16:{instance}::2");

    public static string RouterAddressTowardV6(int instance) => string.Create(CultureInfo.InvariantCulture, $"2001:db8:16:{instance}::1");

    private static string InstanceDownV6(int instance) => string.Create(CultureInfo.InvariantCulture, $"2001:db8:32:{instance}::1");

    private static string ServerTowardV6(int instance) => string.Create(CultureInfo.InvariantCulture, $"2001:db8:32:{instance}::2");

    private static string RouterDevice(int instance) => string.Create(CultureInfo.InvariantCulture, $"inst{instance}");

    /// <summary>
    /// Builds <paramref name="instances"/> instance namespaces (BGP sessions for all configured at the router, none
    /// announcing yet), starts the router's BIRD and mirror; <paramref name="directory"/> receives configs and sockets;
    /// <paramref name="bfd"/> adds BFD between the router and the instances (<see cref="BirdConfig.BfdProtocol"/>);
    /// <paramref name="secondTier"/> puts a second proxy tier between the instances and the server (<see cref="SecondTier"/>, see
    /// <see cref="ConnectSecondTierAsync"/>).
    /// </summary>
    public static async Task<EcmpInstancesTopology> BuildAsync(Lab lab, int instances, string directory, bool bfd = false, CancellationToken cancellationToken = default,
        bool secondTier = false)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentOutOfRangeException.ThrowIfLessThan(instances, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(instances, MaxInstances);
        var client = await lab.AddNamespaceAsync("client", cancellationToken).ConfigureAwait(false);
        var router = await lab.AddNamespaceAsync("router", cancellationToken).ConfigureAwait(false);
        var server = await lab.AddNamespaceAsync("server", cancellationToken).ConfigureAwait(false);
        // Where the instances' downlinks end: the server, or the second tier in front of it.
        var below = secondTier ? await lab.AddNamespaceAsync("tier2", cancellationToken).ConfigureAwait(false) : server;
        var list = new List<NetNamespace>();
        for (int i = 1; i <= instances; i++)
        {
            list.Add(await lab.AddNamespaceAsync(string.Create(CultureInfo.InvariantCulture, $"inst{i}"), cancellationToken).ConfigureAwait(false));
        }

        await lab.ConnectAsync(client, "path1", router, "path1").ConfigureAwait(false);
        await lab.ConnectAsync(client, "path2", router, "path2").ConfigureAwait(false);
        await client.IpBatchAsync(
        [
            $"addr add {ClientPath1V4}/24 dev path1",
            $"addr add {ClientPath2V4}/24 dev path2",
            $"route add default via {RouterPath1V4} dev path1",
            $"route add {InstancesNet} via {RouterPath2V4} dev path2",
            $"addr add {ClientPath1V6}/64 dev path1 nodad",
            $"addr add {ClientPath2V6}/64 dev path2 nodad",
            $"route add ::/0 via {RouterPath1V6} dev path1",
            $"route add {InstancesNetV6} via {RouterPath2V6} dev path2",
            "mptcp endpoint flush",
            "mptcp limits set subflow 2 add_addr_accepted 1",
        ], cancellationToken).ConfigureAwait(false);

        await router.EnableForwardingAsync().ConfigureAwait(false);
        // L4 hash from the 5-tuple itself (policy 3, fields src/dst address, protocol, src/dst port). Policy 1 reuses an
        // L4 hash the packet already carries, and across veth that is the client socket's txhash, which TCP re-randomizes
        // on each retransmission: a retransmitted SYN would land on another instance (seen in this lab with policy 1).
        await router.SysctlAsync(("net.ipv4.fib_multipath_hash_policy", "3"), ("net.ipv4.fib_multipath_hash_fields", "0x0037"),
            ("net.ipv6.fib_multipath_hash_policy", "3"), ("net.ipv6.fib_multipath_hash_fields", "0x0037")).ConfigureAwait(false);
        await router.IpBatchAsync([$"addr add {RouterPath1V4}/24 dev path1", $"addr add {RouterPath2V4}/24 dev path2",
            $"addr add {RouterPath1V6}/64 dev path1 nodad", $"addr add {RouterPath2V6}/64 dev path2 nodad"], cancellationToken).ConfigureAwait(false);

        await server.IpBatchAsync([$"addr add {ServerV4}/32 dev lo", $"addr add {ServerV6}/128 dev lo"], cancellationToken).ConfigureAwait(false);
        for (int i = 1; i <= instances; i++)
        {
            var ns = list[i - 1];
            await lab.ConnectAsync(router, RouterDevice(i), ns, "uplink").ConfigureAwait(false);
            await lab.ConnectAsync(ns, "downlink", below, RouterDevice(i)).ConfigureAwait(false);
            await router.IpBatchAsync([$"addr add {RouterAddressToward(i)}/24 dev {RouterDevice(i)}", $"addr add {RouterAddressTowardV6(i)}/64 dev {RouterDevice(i)} nodad"],
                cancellationToken).ConfigureAwait(false);
            await below.IpBatchAsync([$"addr add {ServerTowardV4(i)}/24 dev {RouterDevice(i)}", $"addr add {ServerTowardV6(i)}/64 dev {RouterDevice(i)} nodad"],
                cancellationToken).ConfigureAwait(false);
            await ns.EnableForwardingAsync().ConfigureAwait(false);
            await ns.IpBatchAsync(
            [
                $"addr add {InstanceAddress(i)}/24 dev uplink",
                $"addr add {InstanceDownV4(i)}/24 dev downlink",
                $"addr add {ServiceV4}/32 dev lo",
                $"route add default via {RouterAddressToward(i)} dev uplink",
                $"route add {ServedPrefix} via {ServerTowardV4(i)} dev downlink",
                $"addr add {InstanceAddressV6(i)}/64 dev uplink nodad",
                $"addr add {InstanceDownV6(i)}/64 dev downlink nodad",
                $"route add ::/0 via {RouterAddressTowardV6(i)} dev uplink",
                $"route add {ServedPrefixV6} via {ServerTowardV6(i)} dev downlink",
                "mptcp limits set subflow 2 add_addr_accepted 0",
            ], cancellationToken).ConfigureAwait(false);
        }

        // The way back to the clients for what an instance passes through untouched (its daemon's pass decisions):
        // over the instances too, as in an on-path deployment.
        await below.IpAsync(["route", "add", ClientNet, .. Enumerable.Range(1, instances).SelectMany(i => new[] { "nexthop", "via", InstanceDownV4(i), "dev", RouterDevice(i) })]).ConfigureAwait(false);
        await below.IpAsync(["route", "add", ClientNetV6, .. Enumerable.Range(1, instances).SelectMany(i => new[] { "nexthop", "via", InstanceDownV6(i), "dev", RouterDevice(i) })]).ConfigureAwait(false);
        if (secondTier)
        {
            await ConnectSecondTierAsync(lab, router, list, below, server, cancellationToken).ConfigureAwait(false);
        }

        var topology = new EcmpInstancesTopology(directory, client, router, list, server, bfd, secondTier ? below : null);
        var routerConf = Path.Combine(directory, "bird-router.conf");
        await File.WriteAllTextAsync(routerConf,
            BirdConfig.Router(RouterPath1V4, Enumerable.Range(1, instances).Select(i => (InstanceAddress(i), InstanceAddressV6(i), BirdConfig.InstanceAs(i))), bfd), cancellationToken).ConfigureAwait(false);
        var bird = router.StartProcess("bird", ["-f", "-c", routerConf, "-s", topology.RouterControlSocket]);
        topology.RouterBird = bird;
        topology.Mirror = router.StartProcess("bash", [Sample("resilient-mirror"), ServedPrefix, $"{BirdConfig.RouterKernelTable}",
            $"{GroupId}", $"{Buckets}", "120", "0.05"]);
        topology.ServiceMirror = router.StartProcess("bash", [Sample("resilient-mirror"), $"{ServiceV4}/32", $"{BirdConfig.RouterKernelTable}",
            $"{ServiceGroupId}", $"{Buckets}", "120", "0.05"]);
        topology.MirrorV6 = router.StartProcess("bash", [Sample("resilient-mirror"), ServedPrefixV6, $"{BirdConfig.RouterKernelTable}",
            $"{GroupIdV6}", $"{Buckets}", "120", "0.05"]);
        return topology;
    }

    /// <summary>
    /// The second tier's unicast address (on its loopback): what it announces with ADD_ADDR on the connections it holds.
    /// Inside the clients' route over path 2 (<see cref="InstancesNet"/>); the router spreads it over the instances, which
    /// forward it to the second tier.
    /// </summary>
    public const string SecondTierAddress = "198.18.30.1";

    private const string SecondTierDownV4 = "198.18.48.1";
    private const string ServerUpV4 = "198.18.48.2";
    private const string SecondTierDownV6 = "2001:db8:48::1";
    private const string ServerUpV6 = "2001:db8:48::2";

    /// <summary>
    /// A chain of tiers: the instances' downlinks end at <paramref name="tier2"/> (one proxy, an on-path router for the
    /// served prefix, with the ECMP way back to the clients over the instances), which reaches the server over one link
    /// (tier2 198.18.48.1/24 ── server 198.18.48.2, 2001:db8:48::/64). The joins of a connection the second tier holds
    /// go to <see cref="SecondTierAddress"/> over path 2 and cross the instances, which pass joins whose token they do
    /// not hold.
    /// </summary>
    private static async Task ConnectSecondTierAsync(Lab lab, NetNamespace router, IReadOnlyList<NetNamespace> instances, NetNamespace tier2, NetNamespace server,
        CancellationToken cancellationToken)
    {
        // Not "up": ip reads short names as keywords.
        await lab.ConnectAsync(tier2, "origin", server, "tier2").ConfigureAwait(false);
        await tier2.EnableForwardingAsync().ConfigureAwait(false);
        await tier2.IpBatchAsync(
        [
            $"addr add {SecondTierAddress}/32 dev lo",
            $"addr add {SecondTierDownV4}/24 dev origin",
            $"addr add {SecondTierDownV6}/64 dev origin nodad",
            $"route add {ServedPrefix} via {ServerUpV4} dev origin",
            $"route add {ServedPrefixV6} via {ServerUpV6} dev origin",
            "mptcp limits set subflow 2 add_addr_accepted 0",
        ], cancellationToken).ConfigureAwait(false);
        await server.IpBatchAsync(
        [
            $"addr add {ServerUpV4}/24 dev tier2",
            $"addr add {ServerUpV6}/64 dev tier2 nodad",
            $"route add default via {SecondTierDownV4} dev tier2",
            $"route add ::/0 via {SecondTierDownV6} dev tier2",
        ], cancellationToken).ConfigureAwait(false);
        await router.IpAsync(["route", "add", SecondTierAddress + "/32",
            .. Enumerable.Range(1, instances.Count).SelectMany(i => new[] { "nexthop", "via", InstanceAddress(i), "dev", RouterDevice(i) })]).ConfigureAwait(false);
        for (int i = 1; i <= instances.Count; i++)
        {
            await instances[i - 1].IpAsync("route", "add", SecondTierAddress + "/32", "via", ServerTowardV4(i), "dev", "downlink").ConfigureAwait(false);
        }
    }

    public LabProcess? RouterBird { get; private set; }

    /// <summary>The router's BIRD control socket (<c>birdc -s</c>).</summary>
    public string RouterControlSocket => Path.Combine(_directory, "bird-router.ctl");

    /// <summary><c>resilient-mirror</c>'s process: one "mirror: ..." line per change of the group.</summary>
    public LabProcess? Mirror { get; private set; }

    /// <summary>The mirror of the service address's route (<see cref="ServiceGroupId"/>).</summary>
    public LabProcess? ServiceMirror { get; private set; }

    /// <summary>The mirror of the IPv6 served prefix's route (<see cref="GroupIdV6"/>).</summary>
    public LabProcess? MirrorV6 { get; private set; }

    /// <summary>
    /// The daemon's instance-mode settings for instance <paramref name="instance"/>: its unicast address (IPv6 with
    /// <paramref name="v6"/>: the in-kernel path manager announces every endpoint on every connection, and a client
    /// accepting one ADD_ADDR must get the one of its own family), its id, and the birdc commands.
    /// </summary>
    public IReadOnlyList<string> InstanceSettings(int instance, bool v6 = false)
    {
        return
        [
            "--set", $"Proxy:AnnounceAddresses={(v6 ? InstanceAddressV6(instance) : InstanceAddress(instance))}",
            "--set", "Proxy:Instance:Enabled=true",
            "--set", string.Create(CultureInfo.InvariantCulture, $"Proxy:Instance:Id=inst{instance}"),
            "--set", $"Proxy:Instance:AnnounceCommand={ServiceRoute("announce", instance)}",
            "--set", $"Proxy:Instance:WithdrawCommand={WithdrawCommand(instance)}",
        ];
    }

    /// <summary>
    /// What the daemon runs first at a stop, and what <c>proxysel-stop-post</c> (ExecStopPost=) runs after any exit: the
    /// shipped <c>samples/scale-out/service-route withdraw</c>, which drops new connections to the service address (not
    /// reset: a client the router still sends here retransmits its SYN a second later, to an instance that serves it),
    /// then withdraws the BGP route.
    /// </summary>
    public string WithdrawCommand(int instance) => ServiceRoute("withdraw", instance);

    private string ServiceRoute(string action, int instance) => $"sh {Sample("service-route")} {action} {_controlSockets[instance - 1]} {ServiceV4}";

    /// <summary>
    /// Starts instance <paramref name="instance"/>: its BIRD (the service protocol disabled), then
    /// <paramref name="daemon"/> (the command line of <c>proxysel run</c>) with <see cref="InstanceSettings"/> under
    /// <c>proxysel-stop-post</c>, which plays systemd's ExecStopPost= (the withdraw after the daemon exits by any means).
    /// The daemon itself enables the protocol once its rules are in. Returns the wrapper's process (its output includes
    /// the daemon's) once the router's group has the instance.
    /// </summary>
    public async Task<LabProcess> StartInstanceAsync(int instance, IReadOnlyList<string> daemon, TimeSpan timeout, bool v6 = false)
    {
        var ns = Instances[instance - 1];
        var conf = Path.Combine(_directory, string.Create(CultureInfo.InvariantCulture, $"bird-i{instance}.conf"));
        await File.WriteAllTextAsync(conf, BirdConfig.Instance(InstanceAddress(instance), BirdConfig.InstanceAs(instance),
            RouterAddressToward(instance), ServedPrefix, ServerTowardV4(instance), ServiceV4,
            (InstanceAddressV6(instance), RouterAddressTowardV6(instance), ServedPrefixV6, ServerTowardV6(instance)), _bfd)).ConfigureAwait(false);
        var socket = _controlSockets[instance - 1];
        ns.StartProcess("bird", ["-f", "-c", conf, "-s", socket]);
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        // BIRD is up once its control socket answers (bounded: 200 tries and the timeout).
        for (int i = 0; i < 200 && (await ns.RunAsync("birdc", ["-s", socket, "show", "status"]).ConfigureAwait(false)).ExitCode != 0; i++)
        {
            if (deadline.Elapsed > timeout)
            {
                throw new LabException($"instance {instance}'s BIRD did not answer on {socket} within {timeout}");
            }

            await Task.Delay(50).ConfigureAwait(false);
        }

        var process = ns.StartProcess("bash", [Sample("proxysel-stop-post"), WithdrawCommand(instance), "--", .. daemon, .. InstanceSettings(instance, v6)]);
        await process.WaitForOutputAsync("service address announced", timeout).ConfigureAwait(false);
        await WaitForGroupAsync(g => g.Contains(InstanceAddress(instance)), timeout).ConfigureAwait(false);
        await WaitForGroupAsync(g => g.Contains(InstanceAddress(instance)), timeout, ServiceGroupId).ConfigureAwait(false);
        await WaitForGroupAsync(g => g.Contains(InstanceAddressV6(instance)), timeout, GroupIdV6).ConfigureAwait(false);
        return process;
    }

    /// <summary>The gateways (instance addresses) in the router's resilient group now; empty when there is no group.</summary>
    public async Task<IReadOnlySet<string>> GroupAsync(int groupId = GroupId)
    {
        var result = await Router.RunAsync("ip", ["-j", "nexthop", "show"]).ConfigureAwait(false);
        if (result.ExitCode != 0 || string.IsNullOrWhiteSpace(result.StdOut))
        {
            return new HashSet<string>();
        }

        using var json = JsonDocument.Parse(result.StdOut);
        var gateways = new Dictionary<long, string>();
        JsonElement? group = null;
        foreach (var nh in json.RootElement.EnumerateArray())
        {
            var id = nh.GetProperty("id").GetInt64();
            if (nh.TryGetProperty("gateway", out var gw))
            {
                gateways[id] = gw.GetString() ?? "";
            }
            else if (id == groupId && nh.TryGetProperty("group", out var g))
            {
                group = g;
            }
        }

        return group is { } members
            ? members.EnumerateArray().Select(m => gateways.GetValueOrDefault(m.GetProperty("id").GetInt64(), "")).ToHashSet()
            : new HashSet<string>();
    }

    /// <summary>Polls the router's group <paramref name="groupId"/> until <paramref name="condition"/> holds; returns the time it took.</summary>
    public async Task<TimeSpan> WaitForGroupAsync(Func<IReadOnlySet<string>, bool> condition, TimeSpan timeout, int groupId = GroupId)
    {
        ArgumentNullException.ThrowIfNull(condition);
        var started = System.Diagnostics.Stopwatch.StartNew();
        IReadOnlySet<string> group = new HashSet<string>();
        while (started.Elapsed < timeout)
        {
            group = await GroupAsync(groupId).ConfigureAwait(false);
            if (condition(group))
            {
                return started.Elapsed;
            }

            await Task.Delay(20).ConfigureAwait(false);
        }

        throw new LabException($"router group {groupId} still [{string.Join(' ', group)}] after {timeout}; mirror: {Mirror?.Output}; service mirror: {ServiceMirror?.Output}; v6 mirror: {MirrorV6?.Output}; bird: {RouterBird?.Output}");
    }

    /// <summary>
    /// A file of samples/scale-out, found by walking up from the running assembly to the repository (the scripts are
    /// the deployable artifacts, so the lab runs them rather than a copy).
    /// </summary>
    public static string Sample(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "samples", "scale-out", name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new LabException($"samples/scale-out/{name} not found above {AppContext.BaseDirectory}");
    }
}
