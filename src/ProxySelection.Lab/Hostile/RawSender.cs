using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Lab.Hostile;

/// <summary>
/// Raw IPv4 and IPv6 sockets of one namespace (IPPROTO_RAW: the kernel sends our IP header as written, spoofed source
/// included, and routes by its destination). Created inside the namespace, usable from any thread afterwards. Not
/// thread-safe: one sender per sending thread.
/// </summary>
public sealed class RawSender : IDisposable
{
    private readonly Socket _v4;
    private readonly Socket _v6;
    private readonly SocketAddress _address4 = new IPEndPoint(IPAddress.Any, 0).Serialize();
    private readonly SocketAddress _address6 = new IPEndPoint(IPAddress.IPv6Any, 0).Serialize();

    private RawSender(Socket v4, Socket v6)
    {
        _v4 = v4;
        _v6 = v6;
    }

    /// <summary>Opens the sockets in <paramref name="ns"/>.</summary>
    public static Task<RawSender> OpenAsync(NetNamespace ns)
    {
        ArgumentNullException.ThrowIfNull(ns);
        return ns.RunInNamespaceAsync(OpenHere);
    }

    /// <summary>Opens the sockets in the calling thread's namespace.</summary>
    internal static RawSender OpenHere()
    {
        // IPPROTO_RAW implies IP_HDRINCL on IPv4, and hdrincl on IPv6 too (Linux af_inet6.c).
        var v4 = new Socket(AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Raw);
        try
        {
            return new RawSender(v4, new Socket(AddressFamily.InterNetworkV6, SocketType.Raw, ProtocolType.Raw));
        }
        catch
        {
            v4.Dispose();
            throw;
        }
    }

    /// <summary>Sends one IP packet (version from its first nibble) to its own destination; false when the kernel refused it.</summary>
    public bool Send(ReadOnlySpan<byte> packet)
    {
        bool v6 = packet.Length > 0 && (packet[0] >> 4) == 6;
        var address = v6 ? _address6 : _address4;
        var buffer = address.Buffer.Span;
        if (v6)
        {
            packet.Slice(24, 16).CopyTo(buffer[8..]); // sockaddr_in6.sin6_addr
        }
        else
        {
            packet.Slice(16, 4).CopyTo(buffer[4..]); // sockaddr_in.sin_addr
        }

        try
        {
            return (v6 ? _v6 : _v4).SendTo(packet, SocketFlags.None, address) == packet.Length;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        _v4.Dispose();
        _v6.Dispose();
    }
}
