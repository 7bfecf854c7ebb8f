using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ProxySelection.Relay;

/// <summary>
/// Creates the relay's sockets. Virtual so that a caller can create them elsewhere, e.g. inside another network
/// namespace: a socket belongs to the namespace of the thread that created it, whatever thread uses it later.
/// </summary>
public class SocketFactory
{
    public static SocketFactory Default { get; } = new();

    /// <summary>A stream socket of the given family and transport, close-on-exec, not yet bound.</summary>
    /// <exception cref="SocketException">socket(2) failed, e.g. EPROTONOSUPPORT when MPTCP is disabled.</exception>
    public virtual Socket Create(AddressFamily family, TransportProtocol protocol) =>
        protocol == TransportProtocol.Mptcp ? CreateMptcp(family) : new Socket(family, SocketType.Stream, ProtocolType.Tcp);

    /// <summary>
    /// An MPTCP socket: .NET refuses <c>new Socket(..., (ProtocolType)262)</c>, so socket(2) is called directly and
    /// the descriptor wrapped; the Socket then drives it through the same epoll engine as any TCP socket.
    /// </summary>
    public static Socket CreateMptcp(AddressFamily family)
    {
        int domain = family switch
        {
            AddressFamily.InterNetwork => Native.AfInet,
            AddressFamily.InterNetworkV6 => Native.AfInet6,
            _ => throw new ArgumentOutOfRangeException(nameof(family), family, "MPTCP needs IPv4 or IPv6"),
        };
        int fd = Native.Socket(domain, Native.SockStream | Native.SockCloexec, Native.IpprotoMptcp);
        if (fd < 0)
        {
            throw new SocketException((int)SocketErrorFromErrno(Marshal.GetLastPInvokeError()));
        }
        var handle = new SafeSocketHandle(fd, ownsHandle: true);
        try
        {
            return new Socket(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static SocketError SocketErrorFromErrno(int errno) => errno switch
    {
        Native.EProtoNoSupport => SocketError.ProtocolNotSupported,
        97 /* EAFNOSUPPORT */ => SocketError.AddressFamilyNotSupported,
        24 /* EMFILE */ or 23 /* ENFILE */ => SocketError.TooManyOpenSockets,
        13 /* EACCES */ => SocketError.AccessDenied,
        105 /* ENOBUFS */ or 12 /* ENOMEM */ => SocketError.NoBufferSpaceAvailable,
        _ => SocketError.SocketError,
    };
}
