using System.Net;
using ProxySelection.Lab;

namespace ProxySelection.Bench;

/// <summary>The namespaces of one run (client ═ proxy ─ server, <see cref="TwoPathTopology"/>) and how to start our relay.</summary>
public sealed class BenchEnvironment(TwoPathTopology topology, IReadOnlyList<string> relayCommand)
{
    public TwoPathTopology Topology { get; } = topology;

    /// <summary>Where relays listen: the proxy's path1 address, which the client reaches without policy routing.</summary>
    public IPAddress ProxyAddress { get; } = IPAddress.Parse(TwoPathTopology.ProxyPath1V4);

    public IPAddress ServerAddress { get; } = IPAddress.Parse(TwoPathTopology.ServerV4);

    /// <summary>How to start <c>proxysel</c>; <c>bench relay ...</c> is appended.</summary>
    public IReadOnlyList<string> RelayCommand { get; } = relayCommand;

    /// <summary>Bytes our relay asks for per read (<c>bench relay --read-size</c>); null: the relay's default (64 KiB).</summary>
    public int? RelayReadSize { get; init; }

    /// <summary>The engine (<c>proxysel run</c>) when an engine subject is measured; shared by those subjects.</summary>
    public LabProcess? Engine { get; set; }
}
