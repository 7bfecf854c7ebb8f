using ProxySelection.Lab;
using LabEnvironment = ProxySelection.Lab.Lab;

namespace ProxySelection.LabTool.Lab;

/// <summary>
/// Hybrid access in four namespaces: a plain TCP client at home behind a CPE (home router, upgrade proxy) with two
/// uplinks ("dsl", "lte") to the operator's aggregation proxy (downgrade), which reaches a TCP-only server.
/// </summary>
/// <remarks>
/// <code>
/// home eth0 198.18.10.2 ── lan 198.18.10.1  CPE  dsl 198.18.11.2 ── dsl 198.18.11.1  AGG  uplink 198.18.13.1 ── eth0 198.18.13.2 server
///                                                lte 198.18.12.2 ── lte 198.18.12.1
/// </code>
/// </remarks>
internal sealed class HybridChain
{
    public const string Home = "198.18.10.2";
    public const string CpeLan = "198.18.10.1";
    public const string CpeDsl = "198.18.11.2";
    public const string CpeLte = "198.18.12.2";
    public const string AggDsl = "198.18.11.1";
    public const string AggLte = "198.18.12.1";
    public const string AggUp = "198.18.13.1";
    public const string Server = "198.18.13.2";

    private HybridChain(NetNamespace home, NetNamespace cpe, NetNamespace agg, NetNamespace server)
    {
        HomeNs = home;
        Cpe = cpe;
        Agg = agg;
        ServerNs = server;
    }

    public NetNamespace HomeNs { get; }

    public NetNamespace Cpe { get; }

    public NetNamespace Agg { get; }

    public NetNamespace ServerNs { get; }

    public IReadOnlyList<NetNamespace> All => [HomeNs, Cpe, Agg, ServerNs];

    /// <summary>Creates the namespaces, links, addresses, routes and the CPE's MPTCP endpoint; both paths shaped to <paramref name="rate"/> each way.</summary>
    public static async Task<HybridChain> BuildAsync(LabEnvironment lab, string rate, CancellationToken cancellationToken)
    {
        var home = await lab.AddNamespaceAsync("home", cancellationToken).ConfigureAwait(false);
        var cpe = await lab.AddNamespaceAsync("cpe", cancellationToken).ConfigureAwait(false);
        var agg = await lab.AddNamespaceAsync("agg", cancellationToken).ConfigureAwait(false);
        var server = await lab.AddNamespaceAsync("server", cancellationToken).ConfigureAwait(false);
        await lab.ConnectAsync(home, "eth0", cpe, "lan").ConfigureAwait(false);
        await lab.ConnectAsync(cpe, DemoChain.Dsl, agg, DemoChain.Dsl).ConfigureAwait(false);
        await lab.ConnectAsync(cpe, DemoChain.Lte, agg, DemoChain.Lte).ConfigureAwait(false);
        await lab.ConnectAsync(agg, "uplink", server, "eth0").ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();

        await home.AddAddressAsync("eth0", Home + "/24").ConfigureAwait(false);
        await cpe.AddAddressAsync("lan", CpeLan + "/24").ConfigureAwait(false);
        await cpe.AddAddressAsync(DemoChain.Dsl, CpeDsl + "/24").ConfigureAwait(false);
        await cpe.AddAddressAsync(DemoChain.Lte, CpeLte + "/24").ConfigureAwait(false);
        await agg.AddAddressAsync(DemoChain.Dsl, AggDsl + "/24").ConfigureAwait(false);
        await agg.AddAddressAsync(DemoChain.Lte, AggLte + "/24").ConfigureAwait(false);
        await agg.AddAddressAsync("uplink", AggUp + "/24").ConfigureAwait(false);
        await server.AddAddressAsync("eth0", Server + "/24").ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();

        await home.AddRouteAsync("default", CpeLan, "eth0").ConfigureAwait(false);
        // The CPE's default uplink is dsl; its lte address leaves by lte (table 102), so the second subflow takes lte.
        await cpe.EnableForwardingAsync().ConfigureAwait(false);
        await cpe.AddRouteAsync("default", AggDsl, DemoChain.Dsl).ConfigureAwait(false);
        await cpe.IpAsync("rule", "add", "from", CpeLte, "table", "102").ConfigureAwait(false);
        await cpe.AddRouteAsync("default", AggLte, DemoChain.Lte, table: 102).ConfigureAwait(false);
        await agg.EnableForwardingAsync().ConfigureAwait(false);
        await agg.AddRouteAsync("198.18.10.0/24", CpeDsl).ConfigureAwait(false);
        await server.AddRouteAsync("default", AggUp).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();

        foreach (var ns in new[] { home, cpe, agg, server })
        {
            await ns.SetMptcpLimitsAsync(2, 2).ConfigureAwait(false);
        }

        await cpe.AddMptcpEndpointAsync(CpeLte, DemoChain.Lte, "subflow").ConfigureAwait(false);
        foreach (var (ns, device) in new[] { (cpe, DemoChain.Dsl), (cpe, DemoChain.Lte), (agg, DemoChain.Dsl), (agg, DemoChain.Lte) })
        {
            await ns.SetRateLimitAsync(device, rate).ConfigureAwait(false);
        }

        return new HybridChain(home, cpe, agg, server);
    }

    /// <summary>
    /// With <paramref name="enabled"/> false the CPE's lte endpoint is removed, so its next MPTCP connections keep to dsl
    /// alone (same proxies, same relays, one subflow); true puts it back. Existing connections are left as they are only
    /// when none is open: call between transfers.
    /// </summary>
    public async Task SetSecondPathAsync(bool enabled)
    {
        await Cpe.IpAsync("mptcp", "endpoint", "flush").ConfigureAwait(false);
        if (enabled)
        {
            await Cpe.AddMptcpEndpointAsync(CpeLte, DemoChain.Lte, "subflow").ConfigureAwait(false);
        }
    }
}
