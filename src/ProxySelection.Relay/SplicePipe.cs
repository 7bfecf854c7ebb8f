using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ProxySelection.Relay;

/// <summary>
/// One direction's kernel pipe for splice(2): socket → pipe → socket without copying the bytes through user space
/// (the pipe holds references to the socket's pages). Created on the first bytes of its direction, so an idle
/// connection holds no pipe and no extra descriptors. Used by one pump loop at a time; not thread-safe.
/// </summary>
internal sealed unsafe class SplicePipe : IDisposable
{
    private const uint Flags = Native.SpliceFMove | Native.SpliceFNonblock;
    private int _read = -1;
    private int _write = -1;

    /// <summary>Bytes moved into the pipe and not yet out of it.</summary>
    public int Pending { get; private set; }

    /// <summary>Opens the pipe (O_NONBLOCK: splice never sleeps on it) and asks for <paramref name="size"/> bytes of room.</summary>
    /// <exception cref="SocketException">pipe2 failed (EMFILE, ENFILE).</exception>
    public static SplicePipe Open(int size)
    {
        int* fds = stackalloc int[2];
        if (Native.Pipe2(fds, Native.ONonblock | Native.OCloexec) != 0)
        {
            throw new SocketException((int)SocketErrors.FromErrno(Marshal.GetLastPInvokeError()));
        }
        // Best effort: a larger pipe moves more per splice; the default is 64 KiB (16 pages).
        _ = Native.Fcntl(fds[1], Native.FSetPipeSize, size);
        return new SplicePipe { _read = fds[0], _write = fds[1] };
    }

    /// <summary>splice(socket → pipe): bytes moved, 0 at EOF, -1 when nothing is readable now.</summary>
    /// <exception cref="SocketException">the read failed.</exception>
    /// <exception cref="ObjectDisposedException">the socket was closed (an abort).</exception>
    public int Fill(Socket source, int maximum)
    {
        long moved = Splice(source.SafeHandle, fromSocket: true, maximum);
        if (moved > 0)
        {
            Pending += (int)moved;
        }
        return (int)moved;
    }

    /// <summary>splice(pipe → socket) of what is pending: bytes moved, -1 when the socket's send buffer is full.</summary>
    /// <exception cref="SocketException">the write failed.</exception>
    /// <exception cref="ObjectDisposedException">the socket was closed (an abort).</exception>
    public int Drain(Socket destination)
    {
        long moved = Splice(destination.SafeHandle, fromSocket: false, Pending);
        if (moved > 0)
        {
            Pending -= (int)moved;
        }
        return (int)moved;
    }

    /// <summary>
    /// Takes the next pending byte out of the pipe (a one-byte copy), for a SendAsync that waits until the destination is
    /// writable again: .NET has no writability wait without data, and this byte is the next one of the stream anyway.
    /// </summary>
    public byte TakeOne()
    {
        byte b;
        while (true)
        {
            nint n = Native.Read(_read, &b, 1);
            if (n == 1)
            {
                Pending--;
                return b;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (n < 0 && errno == Native.EIntr)
            {
                continue;
            }
            throw new SocketException((int)SocketErrors.FromErrno(errno));
        }
    }

    private long Splice(SafeHandle socket, bool fromSocket, int length) =>
        DescriptorCall.Run(socket, (FromSocket: fromSocket, Read: _read, Write: _write, Length: length), static (fd, s) => s.FromSocket
            ? Native.Splice(fd, null, s.Write, null, (nuint)s.Length, Flags)
            : Native.Splice(s.Read, null, fd, null, (nuint)s.Length, Flags));

    public void Dispose()
    {
        if (_read >= 0)
        {
            _ = Native.Close(_read);
            _read = -1;
        }
        if (_write >= 0)
        {
            _ = Native.Close(_write);
            _write = -1;
        }
    }
}
