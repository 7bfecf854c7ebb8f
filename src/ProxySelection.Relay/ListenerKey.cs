using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>One transparent listener per intercepted port, address family and transport.</summary>
public readonly record struct ListenerKey(int Port, AddressFamily Family, TransportProtocol Protocol)
{
    public override string ToString() =>
        $"{(Protocol == TransportProtocol.Mptcp ? "mptcp" : "tcp")}{(Family == AddressFamily.InterNetworkV6 ? "6" : "4")}:{Port}";
}
