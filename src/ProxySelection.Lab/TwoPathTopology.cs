namespace ProxySelection.Lab;

/// <summary>
/// client ═(path1, path2)═ proxy ─ server, all routed, IPv4 and IPv6:
/// <code>
///   client path1 198.18.1.2/24 2001:db8:1::2/64  ── proxy path1 198.18.1.1 2001:db8:1::1
///   client path2 198.18.2.2/24 2001:db8:2::2/64  ── proxy path2 198.18.2.1 2001:db8:2::1
///   proxy  uplink 198.18.3.1/24 2001:db8:3::1/64  ── server downlink 198.18.3.2 2001:db8:3::2
/// </code>
/// The client's default route is path1; traffic sourced from its path2 address leaves by path2 (policy rule, table 102),
/// and path2's addresses are MPTCP <c>subflow</c> endpoints, so an MPTCP connection to the server gets a second
/// subflow over path2. Limits: client and proxy accept 2 subflows; the proxy forwards.
/// </summary>
public sealed class TwoPathTopology
{
    public const string ClientPath1 = "path1";
    public const string ClientPath2 = "path2";
    public const string ProxyPath1 = "path1";
    public const string ProxyPath2 = "path2";
    public const string ProxyUp = "uplink";
    public const string ServerDown = "downlink";

    public const string ClientPath1V4 = "198.18.1.2";
    public const string ClientPath2V4 = "198.18.2.2";
    public const string ProxyPath1V4 = "198.18.1.1";
    public const string ProxyPath2V4 = "198.18.2.1";
    public const string ProxyUpV4 = "198.18.3.1";
    public const string ServerV4 = "198.18.3.2";

    public const string ClientPath1V6 = "2001:db8:1::2";
    public const string ClientPath2V6 = "2001:db8:2::2";
    public const string ProxyPath1V6 = "2001:db8:1::1";
    public const string ProxyPath2V6 = "2001:db8:2::1";
    public const string ProxyUpV6 = "2001:db8:3::1";
    public const string ServerV6 = "2001:db8:3::2";

    /// <summary>Routing table the client uses for traffic sourced from its path2 addresses.</summary>
    public const int ClientPath2Table = 102;

    private TwoPathTopology(NetNamespace client, NetNamespace proxy, NetNamespace server)
    {
        Client = client;
        Proxy = proxy;
        Server = server;
    }

    public NetNamespace Client { get; }

    public NetNamespace Proxy { get; }

    public NetNamespace Server { get; }

    /// <summary>The server's address in the given family (<c>v6</c> true: IPv6).</summary>
    public static string ServerAddress(bool v6) => v6 ? ServerV6 : ServerV4;

    /// <summary>Builds the topology inside <paramref name="lab"/> (which deletes it on dispose).</summary>
    public static async Task<TwoPathTopology> BuildAsync(Lab lab, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lab);
        var client = await lab.AddNamespaceAsync("client", cancellationToken).ConfigureAwait(false);
        var proxy = await lab.AddNamespaceAsync("proxy", cancellationToken).ConfigureAwait(false);
        var server = await lab.AddNamespaceAsync("server", cancellationToken).ConfigureAwait(false);

        await lab.ConnectAsync(client, ClientPath1, proxy, ProxyPath1).ConfigureAwait(false);
        await lab.ConnectAsync(client, ClientPath2, proxy, ProxyPath2).ConfigureAwait(false);
        await lab.ConnectAsync(proxy, ProxyUp, server, ServerDown).ConfigureAwait(false);

        await client.IpBatchAsync(
        [
            $"addr add {ClientPath1V4}/24 dev {ClientPath1}",
            $"addr add {ClientPath2V4}/24 dev {ClientPath2}",
            $"addr add {ClientPath1V6}/64 dev {ClientPath1} nodad",
            $"addr add {ClientPath2V6}/64 dev {ClientPath2} nodad",
            $"route add default via {ProxyPath1V4} dev {ClientPath1}",
            $"route add default via {ProxyPath1V6} dev {ClientPath1}",
            $"route add default via {ProxyPath2V4} dev {ClientPath2} table {ClientPath2Table}",
            $"route add default via {ProxyPath2V6} dev {ClientPath2} table {ClientPath2Table}",
            $"rule add from {ClientPath2V4} table {ClientPath2Table}",
            "mptcp limits set subflow 2 add_addr_accepted 0",
            $"mptcp endpoint add {ClientPath2V4} dev {ClientPath2} subflow",
            $"mptcp endpoint add {ClientPath2V6} dev {ClientPath2} subflow",
        ], cancellationToken).ConfigureAwait(false);
        // Batch lines take no family option, and "ip rule" does not infer it from the address.
        await client.IpAsync("-6", "rule", "add", "from", ClientPath2V6, "table", $"{ClientPath2Table}").ConfigureAwait(false);

        await proxy.EnableForwardingAsync().ConfigureAwait(false);
        await proxy.IpBatchAsync(
        [
            $"addr add {ProxyPath1V4}/24 dev {ProxyPath1}",
            $"addr add {ProxyPath2V4}/24 dev {ProxyPath2}",
            $"addr add {ProxyUpV4}/24 dev {ProxyUp}",
            $"addr add {ProxyPath1V6}/64 dev {ProxyPath1} nodad",
            $"addr add {ProxyPath2V6}/64 dev {ProxyPath2} nodad",
            $"addr add {ProxyUpV6}/64 dev {ProxyUp} nodad",
            "mptcp limits set subflow 2 add_addr_accepted 0",
        ], cancellationToken).ConfigureAwait(false);

        await server.IpBatchAsync(
        [
            $"addr add {ServerV4}/24 dev {ServerDown}",
            $"addr add {ServerV6}/64 dev {ServerDown} nodad",
            $"route add default via {ProxyUpV4} dev {ServerDown}",
            $"route add default via {ProxyUpV6} dev {ServerDown}",
            "mptcp limits set subflow 2 add_addr_accepted 0",
        ], cancellationToken).ConfigureAwait(false);

        return new TwoPathTopology(client, proxy, server);
    }
}
