using ProxySelection.Lab;
using LabEnvironment = ProxySelection.Lab.Lab;

namespace ProxySelection.LabTool.Lab;

/// <summary>
/// The demo's chain in four namespaces: an MPTCP client with two paths ("dsl", "lte") to proxy P1, P1's uplink to
/// proxy P2, P2's uplink to a TCP-only server. Every address is in 198.18.0.0/15 (RFC 2544 benchmarking).
/// </summary>
/// <remarks>
/// <code>
/// client dsl 198.18.1.2 ── dsl 198.18.1.1  P1  uplink 198.18.3.1 ── downlink 198.18.3.2  P2  uplink 198.18.4.1 ── eth0 198.18.4.2 server
/// client lte 198.18.2.2 ── lte 198.18.2.1
/// </code>
/// </remarks>
internal sealed class DemoChain
{
    public const string ClientDsl = "198.18.1.2";
    public const string ClientLte = "198.18.2.2";
    public const string P1Dsl = "198.18.1.1";
    public const string P1Lte = "198.18.2.1";
    public const string P1Up = "198.18.3.1";
    public const string P2Down = "198.18.3.2";
    public const string P2Up = "198.18.4.1";
    public const string Server = "198.18.4.2";
    public const string Dsl = "dsl";
    public const string Lte = "lte";

    private DemoChain(NetNamespace client, NetNamespace p1, NetNamespace p2, NetNamespace server)
    {
        Client = client;
        P1 = p1;
        P2 = p2;
        ServerNs = server;
    }

    public NetNamespace Client { get; }

    public NetNamespace P1 { get; }

    public NetNamespace P2 { get; }

    public NetNamespace ServerNs { get; }

    public IReadOnlyList<NetNamespace> All => [Client, P1, P2, ServerNs];

    /// <summary>Creates the namespaces, links, addresses, routes and MPTCP endpoints; both paths shaped to <paramref name="rate"/> each way.</summary>
    public static async Task<DemoChain> BuildAsync(LabEnvironment lab, string rate, CancellationToken cancellationToken)
    {
        var client = await lab.AddNamespaceAsync("client", cancellationToken).ConfigureAwait(false);
        var p1 = await lab.AddNamespaceAsync("p1", cancellationToken).ConfigureAwait(false);
        var p2 = await lab.AddNamespaceAsync("p2", cancellationToken).ConfigureAwait(false);
        var server = await lab.AddNamespaceAsync("server", cancellationToken).ConfigureAwait(false);
        await lab.ConnectAsync(client, Dsl, p1, Dsl).ConfigureAwait(false);
        await lab.ConnectAsync(client, Lte, p1, Lte).ConfigureAwait(false);
        await lab.ConnectAsync(p1, "uplink", p2, "downlink").ConfigureAwait(false);
        await lab.ConnectAsync(p2, "uplink", server, "eth0").ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();

        await client.AddAddressAsync(Dsl, ClientDsl + "/24").ConfigureAwait(false);
        await client.AddAddressAsync(Lte, ClientLte + "/24").ConfigureAwait(false);
        await p1.AddAddressAsync(Dsl, P1Dsl + "/24").ConfigureAwait(false);
        await p1.AddAddressAsync(Lte, P1Lte + "/24").ConfigureAwait(false);
        await p1.AddAddressAsync("uplink", P1Up + "/24").ConfigureAwait(false);
        await p2.AddAddressAsync("downlink", P2Down + "/24").ConfigureAwait(false);
        await p2.AddAddressAsync("uplink", P2Up + "/24").ConfigureAwait(false);
        await server.AddAddressAsync("eth0", Server + "/24").ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();

        // The client's default path is dsl; traffic from its lte address leaves by lte (table 102), so the second
        // subflow really takes the second link.
        await client.AddRouteAsync("default", P1Dsl, Dsl).ConfigureAwait(false);
        await client.IpAsync("rule", "add", "from", ClientLte, "table", "102").ConfigureAwait(false);
        await client.AddRouteAsync("default", P1Lte, Lte, table: 102).ConfigureAwait(false);
        await p1.EnableForwardingAsync().ConfigureAwait(false);
        await p1.AddRouteAsync("default", P2Down).ConfigureAwait(false);
        await p2.EnableForwardingAsync().ConfigureAwait(false);
        await p2.AddRouteAsync("198.18.1.0/24", P1Up).ConfigureAwait(false);
        await p2.AddRouteAsync("198.18.2.0/24", P1Up).ConfigureAwait(false);
        await server.AddRouteAsync("default", P2Up).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();

        foreach (var ns in new[] { client, p1, p2, server })
        {
            await ns.SetMptcpLimitsAsync(2, 2).ConfigureAwait(false);
        }

        await client.AddMptcpEndpointAsync(ClientLte, Lte, "subflow").ConfigureAwait(false);
        // Shaped on both ends of each path: downloads are limited at P1's egress, uploads at the client's.
        foreach (var (ns, device) in new[] { (client, Dsl), (client, Lte), (p1, Dsl), (p1, Lte) })
        {
            await ns.SetRateLimitAsync(device, rate).ConfigureAwait(false);
        }

        // Checksum offload off toward P2: its captures then show the checksum on the wire, not the partial one veth
        // leaves for offload (which P2's NFQUEUE completes on the SYN/ACKs it inspects, so only those would differ).
        foreach (var (ns, device) in new[] { (p1, "uplink"), (server, "eth0") })
        {
            await ns.CheckAsync("ethtool", ["-K", device, "tx", "off"]).ConfigureAwait(false);
        }

        return new DemoChain(client, p1, p2, server);
    }
}
