using System.Globalization;

namespace ProxySelection.Lab;

/// <summary>
/// client ═(path1, path2)═ H1 ─ H2 ─ … ─ Hn ─ server, IPv4 and IPv6, routed: a chain of <c>n</c> hop namespaces (routers
/// that a caller may turn into proxies by running <c>proxysel run</c> in them). The multipath stretch is client ↔ H1:
/// <code>
///   client path1 198.18.1.2/24, 2001:db8:1::2/64 ── H1 path1 198.18.1.1, 2001:db8:1::1
///   client path2 198.18.2.2/24, 2001:db8:2::2/64 ── H1 path2 198.18.2.1, 2001:db8:2::1
///   Hi uplink 198.18.(10+i).1/24, 2001:db8:(10+i)::1/64 ── H(i+1) downlink 198.18.(10+i).2, 2001:db8:(10+i)::2   (i = 1 .. n-1)
///   Hn uplink 198.18.20.1/24, 2001:db8:20::1/64         ── server downlink 198.18.20.2, 2001:db8:20::2
/// </code>
/// The client's default route is path1; traffic from its path2 addresses leaves by path2 (table 102) and path2's addresses
/// are MPTCP <c>subflow</c> endpoints (the path manager uses the one of the connection's family), so an MPTCP connection gets a second subflow over path2. Every hop forwards,
/// routes the client's subnets and the links before it back toward the client and everything else toward the server. Every namespace accepts 2
/// subflows. Checksum offload is off on every device, so a capture shows the checksum the wire carries (a router that
/// forwards a segment unchanged then shows the same bytes on both sides).
/// </summary>
public sealed class LinearChainTopology
{
    public const string ClientPath1 = "path1";
    public const string ClientPath2 = "path2";
    public const string FirstHopPath1 = "path1";
    public const string FirstHopPath2 = "path2";
    public const string HopDown = "downlink";
    public const string HopUp = "uplink";
    public const string ServerDown = "downlink";

    public const string ClientPath1V4 = "198.18.1.2";
    public const string ClientPath2V4 = "198.18.2.2";
    public const string FirstHopPath1V4 = "198.18.1.1";
    public const string FirstHopPath2V4 = "198.18.2.1";
    public const string ServerV4 = "198.18.20.2";
    public const string LastHopUpV4 = "198.18.20.1";

    public const string ClientPath1V6 = "2001:db8:1::2";
    public const string ClientPath2V6 = "2001:db8:2::2";
    public const string FirstHopPath1V6 = "2001:db8:1::1";
    public const string FirstHopPath2V6 = "2001:db8:2::1";
    public const string ServerV6 = "2001:db8:20::2";
    public const string LastHopUpV6 = "2001:db8:20::1";

    /// <summary>Routing table the client uses for traffic sourced from its path2 address.</summary>
    public const int ClientPath2Table = 102;

    /// <summary>Most hops <see cref="BuildAsync"/> accepts (inter-hop subnets 198.18.11-19.0/24).</summary>
    public const int MaxHops = 9;

    private LinearChainTopology(NetNamespace client, IReadOnlyList<NetNamespace> hops, NetNamespace server)
    {
        Client = client;
        Hops = hops;
        Server = server;
    }

    public NetNamespace Client { get; }

    /// <summary>H1..Hn, H1 nearest the client.</summary>
    public IReadOnlyList<NetNamespace> Hops { get; }

    public NetNamespace Server { get; }

    /// <summary>The server's address in the family asked for.</summary>
    public static string ServerAddress(bool v6) => v6 ? ServerV6 : ServerV4;

    /// <summary>The client's addresses (path1, path2) in the family asked for.</summary>
    public static IReadOnlyList<string> ClientAddresses(bool v6) => v6 ? [ClientPath1V6, ClientPath2V6] : [ClientPath1V4, ClientPath2V4];

    /// <summary>Devices of hop <paramref name="index"/> (0-based) facing the client: path1 and path2 for H1, else downlink.</summary>
    public static IReadOnlyList<string> DownDevices(int index) => index == 0 ? [FirstHopPath1, FirstHopPath2] : [HopDown];

    /// <summary>The address of hop <paramref name="index"/> (0-based) on its uplink.</summary>
    public string HopUpAddress(int index) => index == Hops.Count - 1 ? LastHopUpV4 : InterHop(index + 1, 1);

    /// <summary>Builds <paramref name="hops"/> (1..<see cref="MaxHops"/>) hop namespaces named <c>{rolePrefix}1..n</c>.</summary>
    public static async Task<LinearChainTopology> BuildAsync(Lab lab, int hops, string rolePrefix = "h", CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lab);
        ArgumentOutOfRangeException.ThrowIfLessThan(hops, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(hops, MaxHops);
        var client = await lab.AddNamespaceAsync("client", cancellationToken).ConfigureAwait(false);
        var chain = new List<NetNamespace>();
        for (int i = 1; i <= hops; i++)
        {
            chain.Add(await lab.AddNamespaceAsync(rolePrefix + i.ToString(CultureInfo.InvariantCulture), cancellationToken).ConfigureAwait(false));
        }

        var server = await lab.AddNamespaceAsync("server", cancellationToken).ConfigureAwait(false);
        await lab.ConnectAsync(client, ClientPath1, chain[0], FirstHopPath1).ConfigureAwait(false);
        await lab.ConnectAsync(client, ClientPath2, chain[0], FirstHopPath2).ConfigureAwait(false);
        for (int i = 0; i < hops - 1; i++)
        {
            await lab.ConnectAsync(chain[i], HopUp, chain[i + 1], HopDown).ConfigureAwait(false);
        }

        await lab.ConnectAsync(chain[^1], HopUp, server, ServerDown).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();

        await client.IpBatchAsync(
        [
            $"addr add {ClientPath1V4}/24 dev {ClientPath1}",
            $"addr add {ClientPath2V4}/24 dev {ClientPath2}",
            $"route add default via {FirstHopPath1V4} dev {ClientPath1}",
            $"route add default via {FirstHopPath2V4} dev {ClientPath2} table {ClientPath2Table}",
            $"rule add from {ClientPath2V4} table {ClientPath2Table}",
            $"addr add {ClientPath1V6}/64 dev {ClientPath1} nodad",
            $"addr add {ClientPath2V6}/64 dev {ClientPath2} nodad",
            $"route add default via {FirstHopPath1V6} dev {ClientPath1}",
            $"route add default via {FirstHopPath2V6} dev {ClientPath2} table {ClientPath2Table}",
            "mptcp limits set subflow 2 add_addr_accepted 0",
            $"mptcp endpoint add {ClientPath2V4} dev {ClientPath2} subflow",
            $"mptcp endpoint add {ClientPath2V6} dev {ClientPath2} subflow",
        ], cancellationToken).ConfigureAwait(false);
        await client.IpAsync("-6", "rule", "add", "from", ClientPath2V6, "table", ClientPath2Table.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);

        for (int i = 0; i < hops; i++)
        {
            var lines = new List<string>();
            if (i == 0)
            {
                lines.Add($"addr add {FirstHopPath1V4}/24 dev {FirstHopPath1}");
                lines.Add($"addr add {FirstHopPath2V4}/24 dev {FirstHopPath2}");
                lines.Add($"addr add {FirstHopPath1V6}/64 dev {FirstHopPath1} nodad");
                lines.Add($"addr add {FirstHopPath2V6}/64 dev {FirstHopPath2} nodad");
            }
            else
            {
                lines.Add($"addr add {InterHop(i, 2)}/24 dev {HopDown}");
                lines.Add($"addr add {InterHopV6(i, 2)}/64 dev {HopDown} nodad");
                // The client's subnets and the links nearer it lie back toward the client; the rest (server) ahead.
                foreach (var subnet in new[] { "198.18.1.0/24", "198.18.2.0/24" }.Concat(Enumerable.Range(1, i - 1).Select(l => InterHop(l, 0) + "/24")))
                {
                    lines.Add($"route add {subnet} via {InterHop(i, 1)} dev {HopDown}");
                }

                foreach (var subnet in new[] { "2001:db8:1::/64", "2001:db8:2::/64" }.Concat(Enumerable.Range(1, i - 1).Select(l => InterHopV6(l, 0) + "/64")))
                {
                    lines.Add($"route add {subnet} via {InterHopV6(i, 1)} dev {HopDown}");
                }
            }

            bool last = i == hops - 1;
            lines.Add($"addr add {(last ? LastHopUpV4 : InterHop(i + 1, 1))}/24 dev {HopUp}");
            lines.Add($"route add default via {(last ? ServerV4 : InterHop(i + 1, 2))} dev {HopUp}");
            lines.Add($"addr add {(last ? LastHopUpV6 : InterHopV6(i + 1, 1))}/64 dev {HopUp} nodad");
            lines.Add($"route add default via {(last ? ServerV6 : InterHopV6(i + 1, 2))} dev {HopUp}");
            lines.Add("mptcp limits set subflow 2 add_addr_accepted 0");
            await chain[i].IpBatchAsync(lines, cancellationToken).ConfigureAwait(false);
            await chain[i].EnableForwardingAsync().ConfigureAwait(false);
        }

        await server.IpBatchAsync(
        [
            $"addr add {ServerV4}/24 dev {ServerDown}",
            $"route add default via {LastHopUpV4} dev {ServerDown}",
            $"addr add {ServerV6}/64 dev {ServerDown} nodad",
            $"route add default via {LastHopUpV6} dev {ServerDown}",
            "mptcp limits set subflow 2 add_addr_accepted 0",
        ], cancellationToken).ConfigureAwait(false);

        var devices = new List<(NetNamespace, string)> { (client, ClientPath1), (client, ClientPath2), (server, ServerDown) };
        for (int i = 0; i < hops; i++)
        {
            devices.AddRange(DownDevices(i).Select(d => (chain[i], d)));
            devices.Add((chain[i], HopUp));
        }

        foreach (var (ns, device) in devices)
        {
            await ns.CheckAsync("ethtool", ["-K", device, "tx", "off"], cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        return new LinearChainTopology(client, chain, server);
    }

    /// <summary>
    /// Adds <paramref name="oneWay"/> of delay (netem, root qdisc: replaces any rate limit) on both ends of every link,
    /// so a round trip client–server crosses 2 × (hops + 1) delays, like the chain simulator's equal links.
    /// </summary>
    public async Task SetLinkDelayAsync(TimeSpan oneWay, CancellationToken cancellationToken = default)
    {
        var delay = string.Create(CultureInfo.InvariantCulture, $"{oneWay.TotalMilliseconds:0.###}ms");
        var ends = new List<(NetNamespace, string)> { (Client, ClientPath1), (Client, ClientPath2), (Server, ServerDown) };
        for (int i = 0; i < Hops.Count; i++)
        {
            ends.AddRange(DownDevices(i).Select(d => (Hops[i], d)));
            ends.Add((Hops[i], HopUp));
        }

        foreach (var (ns, device) in ends)
        {
            await ns.CheckAsync("tc", ["qdisc", "replace", "dev", device, "root", "netem", "delay", delay, "limit", "10000"], cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Gives the server <paramref name="count"/> more addresses, 198.18.100.1 upward (on its loopback; the last hop's
    /// default route already leads there): distinct destinations, so every connection finds the proxies' caches cold.
    /// </summary>
    public async Task<IReadOnlyList<string>> AddServerAddressesAsync(int count, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 500);
        var addresses = Enumerable.Range(0, count).Select(i => string.Create(CultureInfo.InvariantCulture, $"198.18.{100 + ((i + 1) / 256)}.{(i + 1) % 256}")).ToList();
        if (count > 0)
        {
            await Server.IpBatchAsync(addresses.Select(a => $"addr add {a}/32 dev lo"), cancellationToken).ConfigureAwait(false);
        }

        return addresses;
    }

    /// <summary>Address <paramref name="host"/> (1: the hop nearer the client, 2: the next) on link i (Hi ↔ Hi+1).</summary>
    private static string InterHop(int link, int host) => string.Create(CultureInfo.InvariantCulture, $"198.18.{10 + link}.{host}");

    /// <summary>The same in IPv6: 2001:db8:(10+i)::host (host 0: the prefix).</summary>
    private static string InterHopV6(int link, int host) =>
        string.Create(CultureInfo.InvariantCulture, $"2001:db8:{10 + link}::{(host == 0 ? "" : host.ToString(CultureInfo.InvariantCulture))}");
}
