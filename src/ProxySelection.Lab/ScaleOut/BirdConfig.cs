using System.Globalization;

namespace ProxySelection.Lab.ScaleOut;

/// <summary>
/// The BIRD 2 configurations of the scale-out lab (samples/scale-out holds the same text for three instances): the router
/// takes the served prefix over eBGP from every instance and installs the equal routes as one multipath route in
/// <see cref="RouterKernelTable"/>; each instance announces the prefix from a static protocol that starts disabled, so
/// nothing is announced until the daemon in instance mode enables it (Proxy:Instance:AnnounceCommand).
/// </summary>
public static class BirdConfig
{
    /// <summary>The kernel table BIRD writes on the router; <c>resilient-mirror</c> copies it into a resilient group.</summary>
    public const int RouterKernelTable = 100;

    /// <summary>The static protocol each instance enables and disables to announce and withdraw the prefix (IPv4).</summary>
    public const string ServiceProtocol = "service";

    /// <summary>Its IPv6 twin: a static protocol has one channel.</summary>
    public const string ServiceProtocolV6 = "service6";

    public const int RouterAs = 64512;

    /// <summary>Hold 3 s (BIRD's minimum), keepalive 1 s: a silent instance host is dropped within 3 s.</summary>
    private const string Timers = "hold time 3; keepalive time 1; connect retry time 1;";

    /// <summary>
    /// BFD on the sessions (<c>bfd on</c>) and its timers: 100 ms, 5 missed packets, so a silent instance is down after
    /// 0.5 s instead of the 3 s hold time; the multiplier leaves room for a loaded host's scheduling delays.
    /// </summary>
    public const string BfdProtocol = "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 5; }; }\n";

    private static string SessionTimers(bool bfd) => bfd ? Timers + " bfd on;" : Timers;

    public static int InstanceAs(int instance) => 64600 + instance;

    /// <summary>The router: two eBGP sessions per instance, IPv4 and IPv6 (configured up front, so a later instance only has to start).</summary>
    public static string Router(string routerId, IEnumerable<(string Neighbor, string NeighborV6, int As)> instances, bool bfd = false)
    {
        var sessions = string.Concat(instances.Select((n, i) => string.Create(CultureInfo.InvariantCulture,
            $"protocol bgp inst{i + 1} from inst {{ neighbor {n.Neighbor} as {n.As}; }}\nprotocol bgp inst{i + 1}v6 from inst6 {{ neighbor {n.NeighborV6} as {n.As}; }}\n")));
        return string.Create(CultureInfo.InvariantCulture, $$"""
            router id {{routerId}};
            log stderr all;
            protocol device { scan time 10; }
            # Equal BGP routes become one multipath kernel route (merge paths); resilient-mirror moves it into a nexthop group.
            protocol kernel { kernel table {{RouterKernelTable}}; merge paths on; ipv4 { import none; export all; }; }
            protocol kernel kernel6 { kernel table {{RouterKernelTable}}; merge paths on; ipv6 { import none; export all; }; }
            template bgp inst { local as {{RouterAs}}; {{SessionTimers(bfd)}} ipv4 { import all; export none; }; }
            # The instance's global address as next hop (the group's members), not its link-local one.
            template bgp inst6 { local as {{RouterAs}}; {{SessionTimers(bfd)}} ipv6 { import all; export none; next hop prefer global; }; }

            """) + (bfd ? BfdProtocol : "") + sessions;
    }

    /// <summary>
    /// An instance: announces <paramref name="prefix"/> (reached via <paramref name="serverGateway"/>) and the anycast
    /// <paramref name="service"/> address (on its loopback; the blackhole route only carries the announcement, eBGP sets
    /// the next hop to the instance) to the router once enabled.
    /// </summary>
    public static string Instance(string address, int localAs, string routerAddress, string prefix, string serverGateway, string service,
        (string Address, string RouterAddress, string Prefix, string ServerGateway) v6, bool bfd = false) =>
        string.Create(CultureInfo.InvariantCulture, $$"""
            router id {{address}};
            log stderr all;
            protocol device { scan time 10; }
            # Disabled until the daemon's rules are in (Proxy:Instance:AnnounceCommand); disabled first at its drain or stop (WithdrawCommand), and by ExecStopPost= when it dies.
            protocol static {{ServiceProtocol}} { disabled yes; ipv4; route {{prefix}} via {{serverGateway}}; route {{service}}/32 blackhole; }
            protocol static {{ServiceProtocolV6}} { disabled yes; ipv6; route {{v6.Prefix}} via {{v6.ServerGateway}}; }
            protocol bgp uplink {
                local {{address}} as {{localAs}};
                neighbor {{routerAddress}} as {{RouterAs}};
                {{SessionTimers(bfd)}}
                ipv4 { import none; export where proto = "{{ServiceProtocol}}"; };
            }
            protocol bgp uplink6 {
                local {{v6.Address}} as {{localAs}};
                neighbor {{v6.RouterAddress}} as {{RouterAs}};
                {{SessionTimers(bfd)}}
                ipv6 { import none; export where proto = "{{ServiceProtocolV6}}"; };
            }

            """) + (bfd ? BfdProtocol : "");
}
