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

    /// <summary>The static protocol each instance enables and disables to announce and withdraw the prefix.</summary>
    public const string ServiceProtocol = "service";

    public const int RouterAs = 64512;

    /// <summary>Hold 3 s (BIRD's minimum), keepalive 1 s: a silent instance host is dropped within 3 s.</summary>
    private const string Timers = "hold time 3; keepalive time 1; connect retry time 1;";

    public static int InstanceAs(int instance) => 64600 + instance;

    /// <summary>The router: one eBGP session per instance (configured up front, so a later instance only has to start).</summary>
    public static string Router(string routerId, IEnumerable<(string Neighbor, int As)> instances)
    {
        var sessions = string.Concat(instances.Select((n, i) => string.Create(CultureInfo.InvariantCulture,
            $"protocol bgp inst{i + 1} from inst {{ neighbor {n.Neighbor} as {n.As}; }}\n")));
        return string.Create(CultureInfo.InvariantCulture, $$"""
            router id {{routerId}};
            log stderr all;
            protocol device { scan time 10; }
            # Equal BGP routes become one multipath kernel route (merge paths); resilient-mirror moves it into a nexthop group.
            protocol kernel { kernel table {{RouterKernelTable}}; merge paths on; ipv4 { import none; export all; }; }
            template bgp inst { local as {{RouterAs}}; {{Timers}} ipv4 { import all; export none; }; }

            """) + sessions;
    }

    /// <summary>
    /// An instance: announces <paramref name="prefix"/> (reached via <paramref name="serverGateway"/>) and the anycast
    /// <paramref name="service"/> address (on its loopback; the blackhole route only carries the announcement, eBGP sets
    /// the next hop to the instance) to the router once enabled.
    /// </summary>
    public static string Instance(string address, int localAs, string routerAddress, string prefix, string serverGateway, string service) =>
        string.Create(CultureInfo.InvariantCulture, $$"""
            router id {{address}};
            log stderr all;
            protocol device { scan time 10; }
            # Disabled until the daemon's rules are in (Proxy:Instance:AnnounceCommand); disabled first at its drain or stop (WithdrawCommand), and by ExecStopPost= when it dies.
            protocol static {{ServiceProtocol}} { disabled yes; ipv4; route {{prefix}} via {{serverGateway}}; route {{service}}/32 blackhole; }
            protocol bgp uplink {
                local {{address}} as {{localAs}};
                neighbor {{routerAddress}} as {{RouterAs}};
                {{Timers}}
                ipv4 { import none; export where proto = "{{ServiceProtocol}}"; };
            }

            """);
}
